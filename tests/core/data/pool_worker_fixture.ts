/** A worker for worker_pool_test.ts: doubles numbers, fails on negatives, crashes on NaN. */
import { DataFileError } from "../../../core/data/errors.ts";
import { serveWorker } from "../../../core/data/worker_pool.ts";

serveWorker<{ factor: number }, { values: Float32Array }, { values: Float32Array }>(
  ({ factor }) => (request) => {
    if (Number.isNaN(request.values[0])) {
      setTimeout(() => {
        throw new Error("boom");
      });
      return new Promise(() => {});
    }
    if (request.values[0] < 0) {
      throw new DataFileError(`file-${request.values[0]}.nii`, "negative first value");
    }
    const values = request.values.map((v) => v * factor);
    return { result: { values }, transfer: [values.buffer] };
  },
);
