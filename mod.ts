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
 * @example A third-party SSL method
 * ```ts
 * import { definePlugin, z } from "./mod.ts";
 * // export default definePlugin({ kind: "ssl-method", name: "my-method", version: "0.1.0",
 * //   coreApi: "^0.1.0", description: "...", supports: ["cnn"], outChannels: 1,
 * //   config: z.object({}), defaults: { cnn: {...} }, build({ network }) { ... } });
 * ```
 *
 * @module
 */

/** The version of voxssl's core; plugins declare the range of core versions they work with. */
export const VERSION = "0.1.0";

/** zod, re-exported so that plugins declare their config schemas with the same instance the core checks. */
export { z } from "zod";

export * from "./core/gpu/mod.ts";
export * from "./core/tensor/mod.ts";
export * from "./core/tensor/reference/attention.ts";
export * from "./core/tensor/reference/ops.ts";
export * from "./core/tensor/reference/philox.ts";
export * from "./core/tensor/reference/rope.ts";
export * from "./core/tensor/reference/activation.ts";
export * from "./core/tensor/reference/loss.ts";
export * from "./core/tensor/reference/norm.ts";
export * from "./core/tensor/reference/pool.ts";
export * from "./core/nn/mod.ts";
export * from "./core/optim/mod.ts";
export * from "./core/plugin/mod.ts";
export * from "./core/train/mod.ts";
export * from "./core/data/mod.ts";
