/**
 * The run report's reconstruction: the method's view of one fixed validation batch (see
 * `LossOutput.reconstruction`), read back for the first sample and channel. Evaluated like validation
 * (network in eval mode, no gradients, the run's precision) with its own generator, so drawing the
 * report changes nothing in the run.
 *
 * @module
 */
import { callPlugin, type Reconstruction } from "../plugin/mod.ts";
import { autocast, Generator, noGrad, scope, type Tensor } from "../tensor/mod.ts";
import type { BatchSource } from "./batch_source.ts";
import { uploadBatch } from "./gpu_batch.ts";
import type { Run } from "./trainer.ts";

/** The four volumes of a reconstruction, `[D, H, W]` each, of the batch's first sample and channel. */
export interface ReconstructionVolumes {
  /** Volume shape `[D, H, W]`. */
  shape: [number, number, number];
  /** Optimizer steps done when it was drawn. */
  step: number;
  /** Each panel, row-major (W fastest). */
  volumes: Record<keyof Reconstruction, Float32Array>;
}

const PANELS: (keyof Reconstruction)[] = ["input", "corrupted", "prediction", "target"];

/**
 * The method's reconstruction of `source.batch(0)`, or null when the method has none (contrastive
 * methods).
 */
export async function captureReconstruction(
  run: Run,
  source: BatchSource,
): Promise<ReconstructionVolumes | null> {
  const host = await source.batch(0);
  const rng = new Generator(run.config.seed + 77, run.gpu);
  run.model.eval();
  let tensors: Tensor[];
  try {
    tensors = scope(() =>
      noGrad(() => {
        const batch = uploadBatch(host, run.gpu, run.method.name);
        const context = { step: 0, epoch: 0, training: false, rng };
        const output = callPlugin(run.method.name, "loss", () => {
          const loss = () => run.instance.loss(batch, context);
          return run.config.precision === "mixed" ? autocast(loss) : loss();
        });
        const views = output.reconstruction
          ? callPlugin(run.method.name, "reconstruction", output.reconstruction)
          : undefined;
        return views ? PANELS.map((p) => views[p]) : [];
      })
    );
  } finally {
    run.model.train();
  }
  if (tensors.length === 0) return null;
  try {
    const volumes = {} as Record<keyof Reconstruction, Float32Array>;
    let shape: [number, number, number] | undefined;
    for (const [i, panel] of PANELS.entries()) {
      const t = tensors[i];
      if (t.rank !== 5) {
        throw new Error(
          `method ${run.method.name}: reconstruction().${panel} has shape [${t.shape}]; expected [B, C, D, H, W]`,
        );
      }
      const dhw = t.shape.slice(2) as [number, number, number];
      if (shape && dhw.join() !== shape.join()) {
        throw new Error(
          `method ${run.method.name}: reconstruction().${panel} is ${dhw.join("×")}, not ${shape.join("×")}`,
        );
      }
      shape = dhw;
      const n = dhw[0] * dhw[1] * dhw[2];
      volumes[panel] = Float32Array.from((await t.toArray()).subarray(0, n)); // sample 0, channel 0
    }
    return { shape: shape!, step: run.step, volumes };
  } finally {
    for (const t of new Set(tensors)) t.dispose();
  }
}
