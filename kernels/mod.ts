/** Kernel launchers: WGSL sources (or generators) and the code that binds and dispatches them. */
export * from "./conv3d_backward_data.ts";
export * from "./conv3d_backward_weight.ts";
export * from "./conv3d_bias_grad.ts";
export * from "./conv3d_forward.ts";
export {
  chooseTile,
  CONV_TUNING,
  convCandidates,
  type ConvChoice,
  convChoiceKey,
  type ConvType,
  defaultTileShape,
  type GemmTile,
  tileKey,
  tileOf,
  type TileShape,
} from "./conv3d_gemm.ts";
export * from "./autotune.ts";
export * from "./autotune_cache.ts";
export {
  checkConv3dGeometry,
  type Conv3dGeometry,
  type Conv3dTriple,
  convMacs,
  convOutputSize,
} from "./conv3d_geometry.ts";
export * from "./attention.ts";
export * from "./copy.ts";
export * from "./elementwise.ts";
export * from "./head_chunks.ts";
export * from "./launch_plan.ts";
export * from "./matmul.ts";
export * from "./philox.ts";
export * from "./reduce.ts";
export * from "./rope.ts";
export * from "./softmax.ts";
export * from "./wgsl.ts";
export * from "./optim.ts";
export * from "./chunked.ts";
export * from "./norm.ts";
export * from "./activation.ts";
export * from "./pool.ts";
export * from "./resample.ts";
export * from "./loss.ts";
export * from "./gather.ts";
