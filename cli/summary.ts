/** The end-of-run summary of `index` and `preprocess`: counts, then every skipped file with its reason. */
import type { SkippedFile } from "../core/data/mod.ts";

/** Prints the summary to stdout; returns the exit code (1 when `strict` and anything was skipped). */
export function reportSkipped(what: string, done: number, skipped: SkippedFile[], strict: boolean): number {
  console.log(`${what}: ${done} done, ${skipped.length} skipped`);
  if (skipped.length > 0) {
    console.log(`skipped files (${skipped.length}):`);
    for (const s of skipped) console.log(`  ${s.path}: ${s.reason}`);
  }
  if (strict && skipped.length > 0) {
    console.error(`--strict: ${skipped.length} file(s) skipped, exiting with status 1`);
    return 1;
  }
  return 0;
}
