/**
 * MAE for ViTs as nnssl's EvaMAE does it (`BaseEvaMAETrainer`, `evaMAE_module.py`): token dropping.
 *
 * - Data side: per sample exactly K = max(1, int(N·(1 − maskRatio))) of the N tokens are kept (2000 of
 *   8000 at 160³), a uniform subset drawn from the sample's generator ({@link drawKeptTokens}); shipped
 *   as the kept indices (i32 [K], ascending) and the token mask of the loss (u8 over the token grid, 1 =
 *   dropped).
 * - GPU side: the encoder runs on the kept tokens only (`network.tokens.encodeTokens(x, { keep })`: the
 *   position embedding and the rotary rows are gathered with the same indices); the full sequence is
 *   restored with `scatterRows`, dropped positions holding one learnable mask token
 *   ({@link restoreSequence}); then {@link MaeVitDecoder}: its own position embedding, 2 Primus blocks
 *   with their own 3D RoPE table and drop path, a final LayerNorm; then the network's own patch decoder.
 *
 * Token order: voxssl's one order everywhere (Primus's: the token grid flattened row-major over the
 * input's dims 2, 3, 4). nnssl flattens its EvaMAE tokens in (dim 3, dim 2, dim 4) order but reads the
 * kept indices back in (dim 2, dim 3, dim 4) order when it builds the loss mask, so its loss mask is the
 * axis-2/3 transpose of the tokens it dropped; {@link nnsslLossTokens} reproduces that on request.
 *
 * @module
 */
import {
  add,
  cast,
  expand,
  type Generator,
  keep as retain,
  LayerNorm,
  Module,
  type Network,
  normal,
  reshape,
  type Rng,
  ropeSinCos,
  scatterRows,
  type Tensor,
  truncNormal,
  type Vec3,
} from "@voxssl/core";
import { EvaBlock, Primus, type PrimusConfig } from "@voxssl/primus";

/** The token size as three edges. */
export function tokenSizeOf(size: number | readonly number[]): Vec3 {
  return typeof size === "number" ? [size, size, size] : [size[0], size[1], size[2]];
}

/** The token grid of a patch cut into tokens of `size` voxels, or undefined when an axis does not divide. */
export function tokenGridOf(patch: readonly number[], size: number | readonly number[]): Vec3 | undefined {
  const s = tokenSizeOf(size);
  const grid = patch.map((p, a) => p / s[a]);
  return grid.length === 3 && grid.every((g) => Number.isInteger(g) && g >= 1) ? grid as Vec3 : undefined;
}

/** Tokens kept of `n` at a mask ratio, as timm's PatchDropout counts them: max(1, int(n·(1 − ratio))). */
export function keptTokenCount(n: number, maskRatio: number): number {
  return Math.max(1, Math.trunc(n * (1 - maskRatio)));
}

/**
 * Draws `count` distinct tokens of `n`, every subset equally likely (a partial Fisher–Yates shuffle from
 * `rng`), returned in ascending order.
 */
export function drawKeptTokens(n: number, count: number, rng: Rng): Int32Array {
  if (!Number.isInteger(count) || count < 1 || count > n) {
    throw new RangeError(`drawKeptTokens(): cannot keep ${count} of ${n} tokens`);
  }
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(n - i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.slice(0, count).sort();
}

/** The token mask of a kept set: 1 for each of the `n` tokens not in `kept`. */
export function droppedTokens(n: number, kept: ArrayLike<number>): Uint8Array {
  const mask = new Uint8Array(n).fill(1);
  for (let i = 0; i < kept.length; i++) mask[kept[i]] = 0;
  return mask;
}

/**
 * nnssl's EvaMAE loss mask for a drop mask in voxssl's token order (`dropped`, over `grid` flattened
 * row-major): nnssl's sequence holds the token at grid position (i, j, k) at index (j·g₀ + i)·g₂ + k, and
 * its loss mask marks grid position (a, b, c) as dropped when the sequence index (a·g₁ + b)·g₂ + c was.
 * For a cubic grid this is the transpose of the drop mask in its first two axes. Returns voxssl's order.
 */
export function nnsslLossTokens(dropped: ArrayLike<number>, grid: readonly number[]): Uint8Array {
  const [g0, g1, g2] = grid;
  const out = new Uint8Array(g0 * g1 * g2);
  for (let p = 0; p < out.length; p++) {
    // p read as nnssl's sequence index: the token at grid (i, j, k) with p = (j·g0 + i)·g2 + k
    const k = p % g2, i = Math.floor(p / g2) % g0, j = Math.floor(p / (g0 * g2));
    out[p] = dropped[(i * g1 + j) * g2 + k];
  }
  return out;
}

/**
 * The full token sequence [B, N, C] from the encoder's kept tokens `encoded` [B, K, C] at positions
 * `keep` (i32 [B, K], distinct per sample): kept rows in place, every other row `maskToken` (C values).
 */
export function restoreSequence(encoded: Tensor, keep: Tensor, maskToken: Tensor, n: number): Tensor {
  const [b, , c] = encoded.shape;
  // the mask token in the encoder's dtype (f16 under autocast)
  const token = cast(maskToken, encoded.dtype);
  return scatterRows(expand(reshape(token, [1, 1, c]), [b, n, c]), keep, encoded);
}

/** The decoder's blocks, named "0", "1", … (a ModuleList). */
class Blocks extends Module {
  readonly items: EvaBlock[] = [];
  add(block: EvaBlock): void {
    this.registerModule(String(this.items.length), block);
    this.items.push(block);
  }
}

/**
 * EvaMAE's transformer decoder (nnssl's `decoder`, a DNA `Eva` of depth 2, and the `mask_token`): its own
 * learnable position embedding [1, N, D] (truncated normal 0.02), Primus blocks of the encoder's width
 * and heads with their own 3D rotary table of the token grid and drop path linear over depth (block i of
 * n: rate·i/(n−1)), a final LayerNorm. Parameters: `mask_token` [1, 1, D] (normal, std 1e-6),
 * `pos_embed`, `blocks.{i}.*` (Primus's block names), `norm.*`.
 */
export class MaeVitDecoder extends Module {
  /** The token grid the position embedding and the rotary table are made for. */
  readonly grid: Vec3;
  /** The blocks. */
  readonly blocks: readonly EvaBlock[];
  readonly #headDim: number;
  #rope: Tensor | undefined;

  /** A decoder for `grid` whose blocks follow `c` (width, heads, depth, drop path, layer scale, …). */
  constructor(c: PrimusConfig, grid: Vec3, rng: Generator) {
    super();
    this.grid = grid;
    this.#headDim = c.embedDim / c.heads;
    const tokens = grid[0] * grid[1] * grid[2];
    this.registerParameter("mask_token", normal([1, 1, c.embedDim], 1e-6, rng));
    this.registerParameter("pos_embed", truncNormal([1, tokens, c.embedDim], rng, 0.02));
    const blocks = this.registerModule("blocks", new Blocks());
    for (let i = 0; i < c.depth; i++) {
      const rate = c.depth > 1 ? (c.dropPathRate * i) / (c.depth - 1) : 0;
      blocks.add(new EvaBlock(c, rate, i + 1, rng));
    }
    this.blocks = blocks.items;
    this.registerModule("norm", new LayerNorm(c.embedDim));
  }

  /** The learnable mask token [1, 1, D]. */
  get maskToken(): Tensor {
    return this.p("mask_token");
  }

  /** The rotary table [N, 2·head_dim] of the grid (built once). */
  rope(like: Tensor): Tensor {
    this.#rope ??= retain(ropeSinCos(this.grid, this.#headDim, { gpu: like.gpu }));
    return this.#rope;
  }

  /** The full sequence [B, N, D] (mask tokens included) → decoded tokens [B, N, D]; `rng` draws drop path. */
  forward(tokens: Tensor, rng?: Generator): Tensor {
    const n = this.grid[0] * this.grid[1] * this.grid[2];
    if (tokens.rank !== 3 || tokens.shape[1] !== n) {
      throw new RangeError(
        `mae decoder: tokens must be [B, ${n}, D] (grid ${this.grid.join("×")}), got ${tokens}`,
      );
    }
    let h = add(tokens, this.p("pos_embed"));
    const rope = this.rope(tokens);
    for (const block of this.blocks) h = block.forward(h, rope, rng);
    return this.child<LayerNorm>("norm").forward(h);
  }

  /** Frees the parameters and the cached rotary table. */
  override dispose(): void {
    super.dispose();
    this.#rope?.dispose();
    this.#rope = undefined;
  }
}

/** What the decoder mirrors of the encoder, with the method's overrides. */
export interface DecoderOptions {
  /** Blocks (nnssl: 2). */
  depth: number;
  /** Heads (default: the encoder's). */
  heads?: number;
  /** Drop-path rate (default: the encoder's, as nnssl passes one rate to both). */
  dropPathRate?: number;
}

/**
 * The decoder's block configuration for a network: the encoder's Primus config (width, MLP ratio, layer
 * scale, attention sub-norm) with the decoder's depth, heads and drop-path rate. Token dropping needs a
 * Primus network (its blocks are Primus's).
 */
export function decoderConfig(network: Network, options: DecoderOptions): PrimusConfig {
  if (!(network instanceof Primus)) {
    throw new Error(
      'mae: token dropping builds its decoder from Primus blocks and needs a Primus network; use methodConfig { "vitVariant": "masked-input" } for other ViTs',
    );
  }
  const c: PrimusConfig = {
    ...network.config,
    depth: options.depth,
    heads: options.heads ?? network.config.heads,
    dropPathRate: options.dropPathRate ?? network.config.dropPathRate,
  };
  if (c.embedDim % c.heads !== 0 || (c.embedDim / c.heads) % 6 !== 0) {
    throw new RangeError(
      `mae: decoderHeads ${c.heads} does not split the width ${c.embedDim} into heads divisible by 6 (3D RoPE)`,
    );
  }
  return c;
}
