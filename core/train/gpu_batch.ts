/**
 * Moves a host batch to the GPU: each array becomes a tensor of its declared dtype and shape (a u8 mask
 * stays one byte per element), wrapped in the {@link GpuBatch} a method's loss receives. Raw crops
 * (`host.raw`) are augmented on the GPU into `image` `[B, 1, D, H, W]` and their masks on the way.
 *
 * @module
 */
import { type Gpu, opFamily } from "../gpu/mod.ts";
import type { GpuBatch } from "../plugin/mod.ts";
import { type Tensor, tensor } from "../tensor/mod.ts";
import type { HostBatch } from "./batch_source.ts";
import { augmentBatchOnGpu, augmentViewsOnGpu, type GpuView } from "./gpu_augment.ts";
import type { RawViewBatch } from "./batch_source.ts";

/** Augments the method's own crops in place in their uploaded arrays, one launch chain per array. */
function augmentViews(gpu: Gpu, tensors: Record<string, Tensor>, views: RawViewBatch, method: string): void {
  const byArray = new Map<string, GpuView[]>();
  views.samples.forEach((list, b) => {
    for (const v of list) {
      const t = tensors[v.array];
      if (!t || t.shape[0] !== views.samples.length) {
        throw new Error(`method ${method}: views to augment in "${v.array}", which the batch lacks`);
      }
      const perSample = t.size / t.shape[0];
      const n = v.shape[0] * v.shape[1] * v.shape[2];
      const list = byArray.get(v.array) ?? [];
      list.push({ base: b * perSample + v.index * n, shape: v.shape, plan: v.plan, sample: b, view: v.view });
      byArray.set(v.array, list);
    }
  });
  for (const [name, list] of byArray) augmentViewsOnGpu(gpu, tensors[name], list, views.key);
}

/** Uploads `host`; `method` names the method in the error for a missing array. */
export function uploadBatch(host: HostBatch, gpu: Gpu, method: string): GpuBatch {
  using _family = opFamily("data");
  const tensors: Record<string, Tensor> = {};
  let size: number | undefined;
  for (const [name, a] of Object.entries(host.arrays)) {
    if (a.shape.length === 0) throw new RangeError(`batch array "${name}" has no batch axis`);
    if (size !== undefined && a.shape[0] !== size) {
      throw new RangeError(`batch array "${name}" has ${a.shape[0]} samples, others ${size}`);
    }
    size = a.shape[0];
    tensors[name] = tensor(a.data, [...a.shape], { gpu, dtype: a.dtype });
  }
  if (host.raw) {
    if (size !== undefined && size !== host.raw.crops.length) {
      throw new RangeError(
        `the batch has ${host.raw.crops.length} raw crops but ${size} samples in its arrays`,
      );
    }
    const out = augmentBatchOnGpu(gpu, host.raw.crops, host.raw.augment);
    tensors[host.raw.imageName] = out.image;
    host.raw.maskNames.forEach((name, k) => {
      if (name) tensors[name] = out.masks[k];
      else out.masks[k].dispose();
    });
    size = host.raw.crops.length;
  }
  if (host.views) augmentViews(gpu, tensors, host.views, method);
  return {
    tensors,
    size: size ?? 0,
    sources: host.sources ?? [],
    get(name: string): Tensor {
      const t = tensors[name];
      if (!t) {
        throw new Error(
          `method ${method}: the batch has no "${name}" (it has: ${
            Object.keys(tensors).join(", ") || "nothing"
          }); ` +
            "the arrays come from the method's sample() hook, or image and masks without one",
        );
      }
      return t;
    },
  };
}
