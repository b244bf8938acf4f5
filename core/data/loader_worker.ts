/**
 * Worker module of the patch loader: builds a sample runner from the loader's init and serves tasks.
 *
 * @module
 */
import {
  createSampleRunner,
  type SampleResult,
  type SampleRunnerInit,
  type SampleTask,
} from "./sample_runner.ts";
import { serveWorker } from "./worker_pool.ts";

serveWorker<SampleRunnerInit, SampleTask, SampleResult>(async (init) => (await createSampleRunner(init)).run);
