/** Tensors, ops, autograd, memory scopes and seeded random numbers. */
export { backward, isGradEnabled, noGrad } from "./autograd.ts";
export * from "./dtype.ts";
export * from "./ops/mod.ts";
export * from "./random.ts";
export { keep, scope, scopeDepth } from "./scope.ts";
export { erf, erfc, normalCdf } from "./special.ts";
export * from "./shape.ts";
export { type GradNode, Tensor } from "./tensor.ts";
