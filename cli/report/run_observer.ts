/**
 * Keeps a run's report current: at each checkpoint it draws the method's reconstruction of the fixed
 * validation batch, saves the slices and viewer volumes, and rewrites `report.html`. A failure here is
 * printed and the run goes on: a report is not worth losing days of training for.
 *
 * @module
 */
import {
  type BatchSource,
  captureReconstruction,
  type CheckpointKind,
  type Run,
  type RunObserver,
} from "../../core/train/mod.ts";
import { saveReconstruction, saveRunInfo, writeRunReport } from "./run_report.ts";

/** Options of {@link reportObserver}. */
export interface ReportObserverOptions {
  /** The run's validation batches (batch 0 is the report's fixed volume); none: no reconstructions. */
  validation?: BatchSource;
  /** The running core version (shown in the report). */
  coreVersion: string;
  /** Where a failure is printed. */
  log: (line: string) => void;
}

/** A run observer that refreshes the report at every checkpoint; `path` is the last page written. */
export function reportObserver(options: ReportObserverOptions): RunObserver & { path?: string } {
  let infoSaved = false;
  const observer: RunObserver & { path?: string } = {
    async checkpoint(_kind: CheckpointKind, run: Run) {
      try {
        if (!infoSaved) await saveRunInfo(run.paths.out, run.gpu, options.coreVersion);
        infoSaved = true;
        if (options.validation) {
          const rec = await captureReconstruction(run, options.validation);
          if (rec) await saveReconstruction(run.paths.out, rec);
        }
        observer.path = await writeRunReport(run.paths.out);
      } catch (error) {
        if ((error as Error).name === "PluginError") throw error;
        options.log(`note: the run report was not refreshed: ${(error as Error).message}`);
      }
    },
  };
  return observer;
}
