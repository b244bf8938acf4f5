/**
 * voxssl: self-supervised pretraining of 3D medical image models on WebGPU.
 *
 * This module is the public API for plugin authors and scripts. Built-in plugins import only this
 * file, exactly as third-party plugins must.
 *
 * @example Compute on the GPU with autograd
 * ```ts
 * import { backward, initGpu, matmul, scope, sum, tensor } from "./mod.ts";
 *
 * await initGpu();
 * const w = tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
 * const loss = scope(() => {
 *   const l = sum(matmul(w, w));
 *   backward(l);
 *   return l;
 * });
 * console.log(await loss.item(), await w.grad!.toArray());
 * ```
 *
 * @module
 */

/** The version of voxssl's core; plugins declare the range of core versions they work with. */
export const VERSION = "0.1.0";

export * from "./core/gpu/mod.ts";
export * from "./core/tensor/mod.ts";
export * from "./core/tensor/reference/ops.ts";
export * from "./core/tensor/reference/philox.ts";
export * from "./core/tensor/reference/activation.ts";
export * from "./core/tensor/reference/loss.ts";
export * from "./core/tensor/reference/norm.ts";
export * from "./core/tensor/reference/pool.ts";
