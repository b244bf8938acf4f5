/**
 * `@voxssl/core/testing`: what tests of voxssl and of its plugins use — the float64 CPU references of
 * every op (the oracles kernels are checked against), the table-driven op harness (values against the
 * reference, gradients against central finite differences), and seeded inputs and tolerance checks.
 * Nothing here runs in a training run.
 *
 * @example Check an op against its reference, gradients included
 * ```ts
 * import { initGpu, mul } from "./mod.ts";
 * import { binaryRef, checkOp } from "./testing.ts";
 *
 * await initGpu();
 * await checkOp({
 *   name: "mul",
 *   inputs: [{ shape: [3, 4] }, { shape: [4] }],
 *   gpu: ([a, b]) => mul(a, b),
 *   ref: ([a, b]) => binaryRef("mul", a, b),
 * });
 * ```
 *
 * @module
 */
export * from "./core/tensor/reference/activation.ts";
export * from "./core/tensor/reference/attention.ts";
export * from "./core/tensor/reference/conv.ts";
export * from "./core/tensor/reference/loss.ts";
export * from "./core/tensor/reference/norm.ts";
export * from "./core/tensor/reference/ops.ts";
export * from "./core/tensor/reference/philox.ts";
export * from "./core/tensor/reference/pool.ts";
export * from "./core/tensor/reference/rope.ts";
export * from "./core/testing/numeric.ts";
export * from "./core/testing/op_harness.ts";
export type { ActivationName, BinaryName, UnaryName } from "./core/tensor/mod.ts";
