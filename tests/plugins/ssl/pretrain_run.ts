/**
 * Shared by the SSL-method tests: a short `voxssl pretrain` from the CLI (a subprocess, as a user runs
 * it), then the finished run reloaded in this process from its checkpoint and its last validation batch
 * evaluated again: the checkpoint round-trips when that loss equals the logged one.
 */
import { assertEquals } from "../../assert.ts";
import {
  type ArchitecturePlugin,
  closeRun,
  loadCheckpoint,
  type MetricsRecord,
  openBatchSources,
  openRun,
  readMetrics,
  type ResolvedRunConfig,
  type SslMethodPlugin,
  validate,
  VERSION,
} from "../../../mod.ts";
import { voxssl, writeConfig } from "../../e2e/cli.ts";

/** What {@link pretrainAndReload} found. */
export interface PretrainResult {
  /** The run's metrics.jsonl. */
  records: MetricsRecord[];
  /** Training losses, in order. */
  train: number[];
  /** Validation losses, in order. */
  validation: number[];
  /** The last validation batch evaluated again by a run reopened from the final checkpoint. */
  reloaded: { loss: number; metrics: Record<string, number> };
  /** The CLI's output. */
  text: string;
}

/**
 * Runs `voxssl pretrain --config <run>` to the end, then reopens the run from its checkpoint (network,
 * method modules, optimizer) in this process and validates it again.
 */
export async function pretrainAndReload(
  run: Record<string, unknown>,
  arch: ArchitecturePlugin,
  method: SslMethodPlugin,
  methodModule: string,
): Promise<PretrainResult> {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/run`;
    const { code, text } = await voxssl(["pretrain", "--config", await writeConfig(dir, { ...run, out })]);
    assertEquals(code, 0, text);
    const records = await readMetrics(`${out}/metrics.jsonl`);
    const config = (await loadCheckpoint(`${out}/checkpoints/final.safetensors`)).meta
      .config as ResolvedRunConfig;
    const sources = await openBatchSources(config, method, { methodModule });
    try {
      const reopened = await openRun({
        config,
        arch,
        method,
        train: sources.train,
        validation: sources.validation,
        coreVersion: VERSION,
        resume: true,
        log: () => {},
      });
      try {
        const reloaded = await validate(reopened, sources.validation!);
        return {
          records,
          train: records.filter((r) => r.kind === "train").map((r) => r.loss),
          validation: records.filter((r) => r.kind === "validation").map((r) => r.loss),
          reloaded,
          text,
        };
      } finally {
        closeRun(reopened);
      }
    } finally {
      await sources.train.close();
      await sources.validation?.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
