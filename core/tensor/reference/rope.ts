/**
 * Reference rotary position embedding in float64, written step by step after timm's
 * `build_fourier_pos_embed` / `build_rotary_pos_embed` / `RotaryEmbeddingCat` / `apply_rot_embed_cat`
 * (timm/layers/pos_embed_sincos.py, v1.0.22, as used by dynamic-network-architectures' Eva / Primus,
 * which pins timm < 1.0.23). See core/tensor/ops/rope.ts for the layout in words.
 */
import { numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

/** Options of {@link ropeTableRef}. */
export interface RopeTableRefOptions {
  temperature?: number;
  /** Grid the embedding was made for (EVA's resize rule: position · ref / grid). Default: the grid. */
  refGrid?: readonly number[];
}

/**
 * The [N, 2R] table of a token grid: N = Π grid, R = 2·axes·bandsPerAxis; row n = [sin | cos], each
 * ordered axis by axis, band by band, every value twice (repeat_interleave).
 */
export function ropeTableRef(
  grid: readonly number[],
  bandsPerAxis: number,
  options: RopeTableRefOptions = {},
): RefTensor {
  const temperature = options.temperature ?? 10000;
  const ref = options.refGrid ?? grid;
  // freq_bands(num_bands, temperature, step=1): 1 / temperature^(j / num_bands)
  const bands = Array.from({ length: bandsPerAxis }, (_, j) => 1 / temperature ** (j / bandsPerAxis));
  // per axis positions t = arange(size) (in_pixels=False), rescaled by ref / size
  const positions = grid.map((size, a) => Array.from({ length: size }, (_, i) => (i / size) * ref[a]));
  const n = numel(grid);
  const half = grid.length * bandsPerAxis * 2;
  const data = new Float64Array(n * 2 * half);
  const coords = new Array<number>(grid.length).fill(0);
  for (let token = 0; token < n; token++) {
    // meshgrid(indexing="ij") flattened row-major: the last axis varies fastest
    let rest = token;
    for (let a = grid.length - 1; a >= 0; a--) {
      coords[a] = rest % grid[a];
      rest = Math.floor(rest / grid[a]);
    }
    const sin: number[] = [];
    const cos: number[] = [];
    for (let a = 0; a < grid.length; a++) {
      for (const band of bands) {
        const angle = positions[a][coords[a]] * band;
        sin.push(Math.sin(angle), Math.sin(angle)); // repeat_interleave(2, -1)
        cos.push(Math.cos(angle), Math.cos(angle));
      }
    }
    data.set([...sin, ...cos], token * 2 * half); // torch.cat([sin, cos], -1)
  }
  return { shape: [n, 2 * half], data };
}

/**
 * x·cos + rot(x)·sin on the first R channels of the last Lt tokens (rot(x) = [−x1, x0, −x3, x2, ...]);
 * x [..., L, Dh]; table [Lt, 2R], or [B, Lt, 2R] for x [B, H, L, Dh] (one table per batch element).
 */
export function applyRopeRef(x: RefTensor, table: RefTensor): RefTensor {
  const r = x.shape.length;
  const dh = x.shape[r - 1];
  const l = x.shape[r - 2];
  const heads = numel(x.shape.slice(0, -2));
  const perBatch = table.shape.length === 3 ? heads / table.shape[0] : 0;
  const lt = table.shape[table.shape.length - 2];
  const rot = table.shape[table.shape.length - 1] / 2;
  const data = Float64Array.from(x.data);
  for (let h = 0; h < heads; h++) {
    const tableBase = perBatch ? Math.floor(h / perBatch) * lt : 0;
    for (let t = l - lt; t < l; t++) {
      const row = (tableBase + t - (l - lt)) * 2 * rot;
      const base = (h * l + t) * dh;
      for (let c = 0; c < rot; c += 2) {
        const x0 = x.data[base + c];
        const x1 = x.data[base + c + 1];
        data[base + c] = x0 * table.data[row + rot + c] - x1 * table.data[row + c];
        data[base + c + 1] = x1 * table.data[row + rot + c + 1] + x0 * table.data[row + c + 1];
      }
    }
  }
  return { shape: [...x.shape], data };
}
