/**
 * Fused optimizers over parameter arenas: SGD (momentum, Nesterov, weight decay) and AdamW (decoupled
 * weight decay, bias correction), with global gradient-norm clipping and dynamic loss scaling, all
 * decided on the GPU (kernels/optim.ts): a step records its kernels and never waits for the GPU.
 *
 * A step: squared norm of every gradient arena (per binding-sized chunk) → clip/unscale coefficient and
 * overflow flag → one update dispatch per group chunk (skipped when the flag is set) → step count and
 * loss-scale update. `readStatus()` reads the step state back when the caller wants to log it.
 */
import { z } from "zod";
import {
  type AdamwHyper,
  type LaunchWindow,
  PARTIAL_STRIDE,
  planWindows,
  poolScratch,
  runAdamw,
  runFill,
  runGradCoefficient,
  runReduce,
  runSgd,
  runStepEnd,
  type Scratch,
  STEP_STATE_SLOTS,
} from "../../kernels/mod.ts";
import type { BufferRange, Gpu, GpuBuffer } from "../gpu/mod.ts";
import { createArena, keep, reshape, slice, type Tensor, tensor } from "../tensor/mod.ts";
import type { ParameterGroup } from "../nn/mod.ts";
import { opFamily } from "../gpu/mod.ts";

/** Optimizer configuration (zod-validated; defaults as PyTorch's). */
export const OptimizerSchema = z.discriminatedUnion("name", [
  z.object({
    name: z.literal("sgd"),
    lr: z.number().positive(),
    momentum: z.number().min(0).max(1).default(0.99),
    nesterov: z.boolean().default(true),
    weightDecay: z.number().min(0).default(3e-5),
  }).strict(),
  z.object({
    name: z.literal("adamw"),
    lr: z.number().positive(),
    betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8),
    weightDecay: z.number().min(0).default(1e-2),
  }).strict(),
]);

/** An optimizer configuration, as the optimizer schema parses it (defaults filled in). */
export type OptimizerConfig =
  | {
    /** SGD with momentum. */
    name: "sgd";
    /** Base learning rate (before the schedule). */
    lr: number;
    /** Momentum (default 0.99). */
    momentum: number;
    /** Nesterov momentum (default true). */
    nesterov: boolean;
    /** L2 weight decay, added to the gradient (default 3e-5). */
    weightDecay: number;
  }
  | {
    /** AdamW. */
    name: "adamw";
    /** Base learning rate (before the schedule). */
    lr: number;
    /** β₁ and β₂ (default [0.9, 0.999]). */
    betas: [number, number];
    /** Added to the denominator (default 1e-8). */
    eps: number;
    /** Decoupled weight decay (default 1e-2). */
    weightDecay: number;
  };

// OptimizerConfig is written out for the docs; this fails to compile when it and the schema drift apart.
const _optimizerConfigIsTheSchemaOutput: [OptimizerConfig, z.output<typeof OptimizerSchema>] extends
  [z.output<typeof OptimizerSchema>, OptimizerConfig] ? true : never = true;

/** Loss scaling for f16 training (PyTorch GradScaler defaults). */
export interface LossScaleConfig {
  /** Whether the loss is scaled (off: the scale stays 1). */
  enabled: boolean;
  /** Starting scale (default 65536). */
  initScale?: number;
  /** Finite steps in a row after which the scale grows (default 2000). */
  growthInterval?: number;
  /** Factor the scale grows by (default 2). */
  growth?: number;
  /** Factor the scale shrinks by after a step with a non-finite gradient (default 0.5). */
  backoff?: number;
}

/** Options of {@link Optimizer}. */
export interface OptimizerOptions {
  /** Global gradient-norm clip (≤ 0 or undefined: none). */
  maxGradNorm?: number;
  /** Dynamic loss scaling for f16 training (default: off). */
  lossScale?: LossScaleConfig;
}

/** What the GPU-side step state says (read back on demand). */
export interface StepStatus {
  /** Steps applied (skipped ones excluded). */
  step: number;
  /** Global norm of the unscaled gradients of the last step. */
  gradNorm: number;
  /** The current loss scale (1 without loss scaling). */
  lossScale: number;
  /** Steps skipped because a gradient was not finite. */
  skipped: number;
  /** Whether the last step was skipped. */
  lastSkipped: boolean;
}

/** Serialised optimizer state (for checkpoints). */
export interface OptimizerState {
  /** The GPU-side step state (step count, gradient norm, loss scale, skip counters), as saved. */
  stepState: number[];
  /** Per group: momentum (SGD) or [m, v] (AdamW) arenas. */
  groups: Float32Array[][];
}

/** A fused optimizer over packed parameter groups. */
export class Optimizer {
  /** The parsed config (defaults filled in). */
  readonly config: OptimizerConfig;
  /** The packed groups it updates, in order. */
  readonly groups: ParameterGroup[];
  readonly #gpu: Gpu;
  readonly #state: Tensor;
  readonly #moments: Tensor[][]; // per group: [momentum] or [m, v] (whole-arena views)
  readonly #partials: GpuBuffer;
  readonly #maxGradNorm: number;
  readonly #lossScale: Required<LossScaleConfig>;
  readonly #scratch: Scratch;

  /** An optimizer over `groups` (from `packParameters`); `config` is validated against the schema. */
  constructor(groups: ParameterGroup[], config: OptimizerConfig, options: OptimizerOptions = {}) {
    if (groups.length === 0) throw new Error("Optimizer: no parameter groups");
    this.config = OptimizerSchema.parse(config);
    this.groups = groups;
    this.#gpu = groups[0].params.whole.gpu;
    const gpu = this.#gpu;
    this.#maxGradNorm = options.maxGradNorm ?? 0;
    const ls = options.lossScale ?? { enabled: false };
    this.#lossScale = {
      enabled: ls.enabled,
      initScale: ls.enabled ? ls.initScale ?? 65536 : 1,
      growthInterval: ls.growthInterval ?? 2000,
      growth: ls.growth ?? 2,
      backoff: ls.backoff ?? 0.5,
    };
    const init = new Array(STEP_STATE_SLOTS).fill(0);
    init[0] = 1;
    init[4] = this.#lossScale.initScale;
    this.#state = keep(tensor(init, [STEP_STATE_SLOTS], { gpu }));
    const count = this.config.name === "sgd" ? 1 : 2;
    this.#moments = groups.map((g) =>
      Array.from({ length: count }, () => {
        const arena = createArena(gpu, g.params.layout, "f32");
        arena.parts.forEach((p) => p.dispose()); // only the whole view is needed
        return keep(arena.whole);
      })
    );
    const chunks = groups.reduce((s, _, gi) => s + this.#windows(gi).length, 0);
    this.#partials = gpu.pool.acquire(chunks * PARTIAL_STRIDE * 4);
    this.#scratch = poolScratch(gpu);
  }

  /** The current loss scale as a one-element tensor: the seed of `backward()` under loss scaling. */
  lossScaleSeed(): Tensor {
    const s = slice(this.#state, [4], [5]);
    const seed = reshape(s, []);
    s.dispose();
    return seed;
  }

  /** Zeroes every gradient arena. */
  zeroGrad(): void {
    using _family = opFamily("optimizer");
    for (const g of this.groups) {
      const b = g.grads.whole.binding;
      runFill(this.#gpu, b, b.size / 4, 0);
    }
  }

  /**
   * The launch planner's windows over group `gi`'s arenas, in the order [grads, params, ...moments]: the
   * same element window in every arena, starting on the offset alignment (the update kernels take no base).
   */
  #windows(gi: number): LaunchWindow<BufferRange>[] {
    const g = this.groups[gi];
    const arenas = [g.grads.whole, g.params.whole, ...this.#moments[gi]];
    const operands = arenas.map((t) => ({
      range: { buffer: t.buffer, offset: t.byteOffset, size: t.size * 4 },
      elementBytes: 4,
      itemStride: 1,
      itemExtent: 1,
    }));
    const granule = this.#gpu.limits.minStorageBufferOffsetAlignment / 4;
    const windows = planWindows(this.#gpu.limits, operands, g.params.whole.size, {
      granule,
      label: "optimizer",
    });
    if (windows.some((w) => w.bases.some((b) => b !== 0))) {
      throw new Error("optimizer: parameter arenas must start on the storage offset alignment");
    }
    return windows;
  }

  /**
   * Records one optimizer step with learning rate `lr` (one value, or one per group). Nothing is read
   * back; a non-finite gradient skips the update on the GPU and lowers the loss scale. A group whose rate
   * is `null` is frozen for this step: no update dispatch at all, so its parameters and moments stay bit
   * for bit as they were (its gradients still count in the global norm; give it none to leave it out).
   */
  step(lr: number | readonly (number | null)[]): void {
    using _family = opFamily("optimizer");
    const gpu = this.#gpu;
    const scratch = this.#scratch;
    let slot = 0;
    for (let gi = 0; gi < this.groups.length; gi++) {
      for (const w of this.#windows(gi)) {
        const out = { buffer: this.#partials, offset: slot * PARTIAL_STRIDE * 4, size: 4 };
        const r = { outer: 1, r: w.items, inner: 1 };
        runReduce(gpu, "sumsq", "f32", "f32", w.ranges[0], out, r, 1, scratch);
        slot++;
      }
    }
    const state = this.#state.binding;
    runGradCoefficient(
      gpu,
      { buffer: this.#partials, size: slot * PARTIAL_STRIDE * 4 },
      slot,
      state,
      this.#maxGradNorm,
    );
    this.groups.forEach((g, gi) => {
      const rate = typeof lr === "number" ? lr : lr[gi];
      if (rate === null) return;
      const c = this.config;
      const weightDecay = g.options.weightDecay ?? c.weightDecay;
      for (const { ranges: [grad, param, m0, m1], items: n } of this.#windows(gi)) {
        if (c.name === "sgd") {
          runSgd(gpu, state, grad, param, m0, n, {
            lr: rate,
            momentum: c.momentum,
            nesterov: c.nesterov,
            weightDecay,
          });
        } else {
          const h: AdamwHyper = { lr: rate, beta1: c.betas[0], beta2: c.betas[1], eps: c.eps, weightDecay };
          runAdamw(gpu, state, grad, param, m0, m1, n, h);
        }
      }
    });
    runStepEnd(gpu, state, {
      dynamic: this.#lossScale.enabled,
      growthInterval: this.#lossScale.growthInterval,
      growth: this.#lossScale.growth,
      backoff: this.#lossScale.backoff,
    });
  }

  /** Reads the step state (waits for the GPU). */
  async readStatus(): Promise<StepStatus> {
    const s = await this.#state.toArray();
    return { step: s[2], gradNorm: s[3], lossScale: s[4], skipped: s[6], lastSkipped: s[1] !== 0 };
  }

  /** Copies the optimizer state to the host (for a checkpoint). */
  async exportState(): Promise<OptimizerState> {
    return {
      stepState: [...await this.#state.toArray()],
      groups: await Promise.all(
        this.#moments.map((ms) => Promise.all(ms.map(async (m) => Float32Array.from(await m.toArray())))),
      ),
    };
  }

  /**
   * Starts over as a new optimizer over the same groups would: every moment zero and the step count 0
   * (AdamW's bias correction restarts); the loss scale and skip counters are kept.
   */
  async resetMoments(): Promise<void> {
    for (const m of this.#moments.flat()) runFill(this.#gpu, m.binding, m.size, 0);
    const state = await this.#state.toArray();
    state[2] = 0;
    this.#state.write(state);
  }

  /** Restores a state from {@link exportState}. */
  importState(state: OptimizerState): void {
    if (state.stepState.length !== STEP_STATE_SLOTS || state.groups.length !== this.#moments.length) {
      throw new Error("optimizer state does not match this optimizer (groups or step state differ)");
    }
    this.#state.write(state.stepState);
    state.groups.forEach((ms, gi) => {
      if (ms.length !== this.#moments[gi].length) {
        throw new Error(`optimizer state: group ${gi} has ${ms.length} moment arenas`);
      }
      ms.forEach((m, k) => this.#moments[gi][k].write(m));
    });
  }

  /** Frees the optimizer's GPU state (not the parameters). */
  dispose(): void {
    this.#state.dispose();
    this.#moments.flat().forEach((m) => m.dispose());
    this.#gpu.pool.release(this.#partials);
  }
}
