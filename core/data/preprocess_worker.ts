/**
 * Worker module of {@link preprocessDataset}: preprocesses one image per task and writes its cache entry.
 *
 * @module
 */
import type { ImageRecord } from "./dataset_index.ts";
import type { NiftiLimits } from "./nifti_read.ts";
import { type ImageProperties, type PreprocessParameters, preprocessToCache } from "./preprocess.ts";
import { serveWorker } from "./worker_pool.ts";

/** One preprocessing task. */
export interface PreprocessTask {
  record: ImageRecord;
  cacheDir: string;
  parameters: PreprocessParameters;
  limits: NiftiLimits;
}

serveWorker<unknown, PreprocessTask, ImageProperties>(() => async (task) => ({
  result: await preprocessToCache(task.record, task.cacheDir, task.parameters, task.limits),
}));
