/**
 * `voxssl report <run>`: (re)draws `<run>/report.html` from the run folder: curves, reconstructions,
 * the 3D viewer, config, versions and adapter. Needs no GPU and no network; the page needs none either.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { writeRunReport } from "../report/run_report.ts";

/** Adds `report` to the program. */
export function registerReport(program: Command): void {
  program
    .command("report")
    .description("write <run>/report.html: a self-contained offline page of the run")
    .argument("<run>", "run folder (with metrics.jsonl)")
    .action(async (run) => {
      const stat = await Deno.stat(run).catch(() => undefined);
      if (!stat?.isDirectory) throw new ConfigError(`report ${run}: not a run folder (no such directory)`);
      if (!(await Deno.stat(`${run}/metrics.jsonl`).catch(() => undefined))) {
        throw new ConfigError(`report ${run}: no metrics.jsonl there: is it a voxssl run folder?`);
      }
      console.log(`report: ${resolve(await writeRunReport(run))}`);
    });
}
