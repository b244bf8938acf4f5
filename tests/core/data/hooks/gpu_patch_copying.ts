/** gpu_patch_hook.ts declaring gpuAugmentation but returning a copy of the image. */
import { makeHook } from "./gpu_patch_hook.ts";

export default makeHook("gpu-patch-copying", true, true);
