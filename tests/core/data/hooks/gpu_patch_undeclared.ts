/** gpu_patch_hook.ts without the gpuAugmentation declaration. */
import { makeHook } from "./gpu_patch_hook.ts";

export default makeHook("gpu-patch-undeclared", false, false);
