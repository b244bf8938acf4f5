/** Tensors, ops, autograd, memory scopes and seeded random numbers. */
export { backward, type BackwardOptions, isGradEnabled, noGrad } from "./autograd.ts";
export { autocast, autocastDtype, type AutocastOptions, isAutocastEnabled } from "./autocast.ts";
export { checkpoint, type CheckpointOptions } from "./checkpoint.ts";
export * from "./dtype.ts";
export * from "./ops/mod.ts";
export * from "./random.ts";
export { keep, OWNED_TENSORS, scope, scopeDepth, type TensorOwner } from "./scope.ts";
export { erf, erfc, normalCdf } from "./special.ts";
export * from "./shape.ts";
export * from "./arena.ts";
export { type GradNode, Tensor } from "./tensor.ts";
