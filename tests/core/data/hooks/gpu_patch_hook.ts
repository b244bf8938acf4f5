/**
 * Data hooks for the GPU-augmentation tests, shaped like MAE's: the run's standard patch as `image` (and its
 * deface mask as `deface`), plus a block mask drawn with the sample's rng. The default export declares
 * `gpuAugmentation`; gpu_patch_undeclared.ts is the same without it; gpu_patch_copying.ts declares it but
 * returns a copy of the image (which the runner must refuse).
 */
import { sampleArray, type SampleContext } from "../../../../mod.ts";

function sample(context: SampleContext<unknown>, copy: boolean) {
  const patch = context.patch();
  const out: Record<string, ReturnType<typeof sampleArray>> = {
    image: sampleArray(copy ? patch.image.slice() : patch.image, [1, ...patch.shape]),
    blockMask: sampleArray(Uint8Array.from({ length: 8 }, () => +context.rng.chance(0.5)), [2, 2, 2]),
  };
  if (patch.masks.deface) out.deface = sampleArray(patch.masks.deface, [1, ...patch.shape]);
  return out;
}

/** A hook plugin: `declared` sets gpuAugmentation, `copy` returns a copy of the image. */
export function makeHook(name: string, declared: boolean, copy: boolean) {
  return {
    name,
    ...(declared ? { gpuAugmentation: true } : {}),
    sample: (context: SampleContext<unknown>) => sample(context, copy),
  };
}

export default makeHook("gpu-patch-fixture", true, false);
