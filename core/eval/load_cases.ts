/**
 * A downstream cache (downstream_cache.ts) read whole into memory as a {@link SegmentationDataset}:
 * fine-tuning datasets are small (nnU-Net keeps them in RAM too), and patches are cut from memory.
 *
 * @module
 */
import type { SegmentationDataset } from "./finetune.ts";
import { openDownstreamCase, readDownstreamManifest } from "./downstream_cache.ts";
import type { SegmentationCase } from "./seg_batches.ts";

/** Loads every case (or the given ids) of the downstream cache at `cacheDir`. */
export async function loadDownstreamDataset(
  cacheDir: string,
  ids?: readonly string[],
): Promise<SegmentationDataset> {
  const manifest = await readDownstreamManifest(cacheDir);
  const wanted = ids ?? manifest.cases.map((c) => c.id);
  const cases: SegmentationCase[] = [];
  for (const id of wanted) {
    const c = openDownstreamCase(cacheDir, manifest, id);
    try {
      const shape = c.entry.shape;
      const n = shape[0] * shape[1] * shape[2];
      const { image, label } = c.readPatch([0, 0, 0], shape);
      const channels = Array.from({ length: c.channels }, (_, k) => image.slice(k * n, (k + 1) * n));
      cases.push({ id, image: channels, label, shape: [...shape] });
    } finally {
      c.close();
    }
  }
  const spacing = manifest.parameters.targetSpacing;
  return {
    name: manifest.dataset.name,
    labels: manifest.dataset.labels,
    channelNames: manifest.dataset.channels,
    spacing: spacing ? [spacing[0], spacing[1], spacing[2]] : null,
    cases,
  };
}
