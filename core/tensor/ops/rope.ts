/**
 * Rotary position embedding (RoPE) for 3D token grids, in the layout of the reference Primus / EVA
 * implementation, so weights and activations line up with the PyTorch model.
 *
 * Source read for the facts (not copied): MIC-DKFZ/dynamic-network-architectures,
 * dynamic_network_architectures/building_blocks/eva.py (`Eva.__init__`: for a 3D `ref_feat_shape`,
 * rope_dim = head_dim / 1.5, asserted divisible by 4, and `RotaryEmbeddingCat(rope_dim, in_pixels=False,
 * feat_shape=ref_feat_shape, ref_feat_shape=ref_feat_shape)`; architectures/primus.py: tokens flattened
 * "b c w h d -> b (w h d) c", i.e. row-major over the three spatial axes) and timm (pinned < 1.0.23),
 * timm/layers/pos_embed_sincos.py v1.0.22 (`freq_bands`, `build_fourier_pos_embed`,
 * `build_rotary_pos_embed`, `RotaryEmbeddingCat`, `apply_rot_embed_cat`) and timm/models/eva.py
 * (`EvaAttention.forward`: rope applied to q and k after the q/k norms, before attention, to all tokens
 * after the prefix tokens, interleaved pairs since `rotate_half` is false).
 *
 * The layout, for a grid (D', H', W') and b = bandsPerAxis bands per axis (Primus: b = rope_dim/4 =
 * head_dim/6, e.g. 12 for head dim 72, 11 for 66):
 * - bands_j = 1 / 10000^(j/b), j = 0..b−1 (timm `freq_bands(step=1)`, "language" frequencies);
 * - token n = (d·H' + h)·W' + w has positions (d, h, w) (times ref/grid when a reference grid is given);
 * - angle θ_{a,j} = position_a · bands_j; the R = 6b rotated channels are ordered axis-major, band-minor,
 *   each angle used by one adjacent channel pair: channels (2(a·b+j), 2(a·b+j)+1) rotate by θ_{a,j};
 * - table row n = [sin θ (R values, each repeated twice) | cos θ (same order)]: shape [N, 2R];
 * - y_{2i} = x_{2i}·cos − x_{2i+1}·sin, y_{2i+1} = x_{2i+1}·cos + x_{2i}·sin (`rot(x)` interleaved).
 * Since the reference sets rope_dim = head_dim/1.5, R = 1.5·rope_dim = head_dim: in Primus the rotation
 * covers the whole head dimension. When R < Dh (other band counts) the remaining channels pass through.
 */
import { runRope } from "../../../kernels/mod.ts";
import { getGpu, type Gpu } from "../../gpu/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { numel } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { emptyOn, tensor } from "./create.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Options of {@link ropeSinCos}. */
export interface RopeTableOptions {
  /** Frequency bands per axis; default ⌊headDim / (2·axes)⌋ (Primus: head_dim/6 for 3D). */
  bandsPerAxis?: number;
  /** Base of the frequencies; default 10000. */
  temperature?: number;
  /** The grid the model was trained on; positions are scaled by ref/grid (EVA's resize rule). */
  refGrid?: readonly number[];
  /** Device; default the process default. */
  gpu?: Gpu;
}

/** The host values of a rotary table, float64 (see {@link ropeSinCos}). */
export function ropeSinCosValues(
  grid: readonly number[],
  headDim: number,
  options: Omit<RopeTableOptions, "gpu"> = {},
): { values: Float64Array; tokens: number; rotaryDim: number } {
  if (grid.length < 1 || grid.some((g) => !Number.isInteger(g) || g < 1)) {
    throw new RangeError(`ropeSinCos(): grid sizes must be integers >= 1, got [${grid}]`);
  }
  const bands = options.bandsPerAxis ?? Math.floor(headDim / (2 * grid.length));
  const rotaryDim = 2 * grid.length * bands;
  if (!Number.isInteger(bands) || bands < 1 || rotaryDim > headDim) {
    throw new RangeError(
      `ropeSinCos(): ${bands} bands per axis over ${grid.length} axes need ${rotaryDim} channels; ` +
        `head dim is ${headDim}`,
    );
  }
  const ref = options.refGrid ?? grid;
  if (ref.length !== grid.length) throw new RangeError(`ropeSinCos(): refGrid [${ref}] vs grid [${grid}]`);
  const temperature = options.temperature ?? 10000;
  const freqs = Array.from({ length: bands }, (_, j) => temperature ** (-j / bands));
  const tokens = numel(grid);
  const values = new Float64Array(tokens * 2 * rotaryDim);
  const strides = grid.map((_, a) => numel(grid.slice(a + 1)));
  for (let n = 0; n < tokens; n++) {
    const row = n * 2 * rotaryDim;
    for (let a = 0; a < grid.length; a++) {
      const position = (Math.floor(n / strides[a]) % grid[a]) / grid[a] * ref[a];
      for (let j = 0; j < bands; j++) {
        const angle = position * freqs[j];
        const c = 2 * (a * bands + j);
        values[row + c] = values[row + c + 1] = Math.sin(angle);
        values[row + rotaryDim + c] = values[row + rotaryDim + c + 1] = Math.cos(angle);
      }
    }
  }
  return { values, tokens, rotaryDim };
}

/**
 * The [sin | cos] rotary table for a token grid, shaped [N, 2R] in f32 (N = Π grid, R the rotated
 * channels), in the reference's layout (see the file header). For Primus pass the 3D token grid
 * (input size / patch size per axis) and the head dim: R equals the head dim when it is divisible by 6.
 * @example
 * const sinCos = ropeSinCos([20, 20, 20], 72); // Primus-M at 160³: [8000, 144]
 * const qr = applyRope(q, sinCos); // q [B, 12, 8000, 72]
 */
export function ropeSinCos(grid: readonly number[], headDim: number, options: RopeTableOptions = {}): Tensor {
  const { values, tokens, rotaryDim } = ropeSinCosValues(grid, headDim, options);
  return tensor(Float32Array.from(values), [tokens, 2 * rotaryDim], { gpu: options.gpu ?? getGpu() });
}

/**
 * Per-batch rotary tables for kept tokens, shaped [B, K, 2R] f32: row k of batch b is the row
 * `keep[b][k]` of {@link ropeSinCos}'s table (timm's `apply_keep_indices_nlc` after patch dropout, as
 * Primus's MAE path uses it). Every batch element keeps the same number K of tokens.
 * @example
 * const sinCos = ropeSinCosAt([20, 20, 20], 72, keptIndices); // then applyRope(q, sinCos), q [B, H, K, 72]
 */
export function ropeSinCosAt(
  grid: readonly number[],
  headDim: number,
  keep: readonly (readonly number[])[],
  options: RopeTableOptions = {},
): Tensor {
  const { values, tokens, rotaryDim } = ropeSinCosValues(grid, headDim, options);
  const kept = keep[0]?.length ?? 0;
  const width = 2 * rotaryDim;
  const out = new Float32Array(keep.length * kept * width);
  keep.forEach((indices, b) => {
    if (indices.length !== kept) {
      throw new RangeError(
        `ropeSinCosAt(): batch ${b} keeps ${indices.length} tokens, batch 0 keeps ${kept}`,
      );
    }
    indices.forEach((token, k) => {
      if (!Number.isInteger(token) || token < 0 || token >= tokens) {
        throw new RangeError(`ropeSinCosAt(): token ${token} is outside the grid's ${tokens} tokens`);
      }
      out.set(values.subarray(token * width, (token + 1) * width), (b * kept + k) * width);
    });
  });
  return tensor(out, [keep.length, kept, width], { gpu: options.gpu ?? getGpu() });
}

function ropeKernel(x: Tensor, sinCos: Tensor, inverse: boolean): Tensor {
  const name = "applyRope()";
  if (x.dtype !== "f32" && x.dtype !== "f16") throw new TypeError(`${name}: x must be f32 or f16, got ${x}`);
  if (sinCos.dtype !== "f32") throw new TypeError(`${name}: the sin/cos table must be f32, got ${sinCos}`);
  if (x.rank < 2) throw new RangeError(`${name}: x needs shape [..., L, Dh], got ${x}`);
  if (sinCos.rank !== 2 && !(sinCos.rank === 3 && x.rank === 4)) {
    throw new RangeError(
      `${name}: table must be [L, 2R] (or [B, L, 2R] with x [B, H, L, Dh]), got ${sinCos}`,
    );
  }
  const headDim = x.shape[x.rank - 1];
  const length = x.shape[x.rank - 2];
  const tableLength = sinCos.shape[sinCos.rank - 2];
  const width = sinCos.shape[sinCos.rank - 1];
  const rotaryDim = width / 2;
  if (width % 4 !== 0 || rotaryDim > headDim) {
    throw new RangeError(
      `${name}: table width ${width} must be 2·R with R even and R <= head dim ${headDim}`,
    );
  }
  if (tableLength > length) {
    throw new RangeError(
      `${name}: table has ${tableLength} tokens, x only ${length} (x ${x}, table ${sinCos})`,
    );
  }
  if (sinCos.rank === 3 && sinCos.shape[0] !== x.shape[0]) {
    throw new RangeError(`${name}: batched table ${sinCos} needs batch ${x.shape[0]} (x ${x})`);
  }
  const heads = numel(x.shape.slice(0, -2));
  const out = emptyOn(x, x.shape);
  runRope(x.gpu, x.dtype, x.binding, sinCos.binding, out.binding, {
    heads,
    length,
    headDim,
    rotaryDim,
    tableLength,
    headsPerBatch: sinCos.rank === 3 ? heads / sinCos.shape[0] : 0,
    inverse,
  });
  return out;
}

/**
 * Applies the rotary embedding to x [..., L, Dh] (q or k, typically [B, H, L, Dh]) with a table from
 * {@link ropeSinCos}: [Lt, 2R] shared by all heads, or [B, Lt, 2R] per batch element (e.g. the table
 * gathered at the kept tokens after patch dropout). Rotates the first R channels of the last Lt tokens;
 * the first L − Lt tokens (prefix tokens) and channels ≥ R pass through. Differentiable in x (the table
 * is a constant). f32 or f16 x; the table is f32.
 */
export function applyRope(x: Tensor, sinCos: Tensor): Tensor {
  using _family = opFamily("attention");
  const out = ropeKernel(x, sinCos, false);
  return record("applyRope", [x], out, [sinCos], (g) => [noGrad(() => ropeKernel(g, sinCos, true))]);
}
