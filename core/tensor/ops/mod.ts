/** All tensor ops. Importing this module also installs the ops autograd uses to accumulate. */
import { installGradMath } from "../autograd.ts";
import { onesLike } from "./create.ts";
import { add, addInPlace, cast, clone } from "./elementwise.ts";

installGradMath({
  add: (a, b) => add(a, b),
  addInPlace: (t, s) => addInPlace(t, s),
  clone,
  onesLike,
  cast: (a, dtype) => cast(a, dtype),
});

export * from "./conv.ts";
export * from "./attention.ts";
export * from "./create.ts";
export * from "./elementwise.ts";
export * from "./gather.ts";
export * from "./loss.ts";
export * from "./activation.ts";
export * from "./matmul.ts";
export * from "./norm.ts";
export * from "./pool.ts";
export * from "./reduce.ts";
export * from "./resample.ts";
export * from "./rope.ts";
export * from "./shape.ts";
export * from "./softmax.ts";
