/**
 * Models Genesis' painting, as nnssl runs it (`image_in_painting`, `image_out_painting`):
 *
 * - in-painting: while fewer than 5 boxes and U < 0.95, a box with sides uniform in
 *   {⌊dim/6⌋ … ⌊dim/3⌋} (26–53 at 160) and starts uniform in {3 … dim − side − 3} is filled with U[0, 1)
 *   noise;
 * - out-painting: the whole image is replaced by U[0, 1) noise, then one box with sides
 *   dim − U{⌊3·dim/7⌋ … ⌊4·dim/7⌋} (69–92 at 160), starts as above, copies the original back, plus up to 4
 *   more such boxes while U < 0.95.
 *
 * Per box the draws are nnssl's: the three sides, then the three starts. The boxes are drawn first
 * ({@link drawInPaintBoxes}, {@link drawOutPaintBoxes}); the noise comes from a second stream, in C order
 * over each in-painted box, or over the whole patch for out-painting.
 *
 * nnssl needs every axis of at least 8 voxels (in-painting) or 14 (out-painting), otherwise its start range
 * is empty and Python's `randint` fails; for smaller axes the 3-voxel margin shrinks to what fits, so the
 * boxes always lie inside the patch.
 *
 * @module
 */
import type { Rng } from "@voxssl/core";

/** An axis-aligned box of a `[D, H, W]` patch. */
export interface PaintBox {
  /** First voxel, per axis. */
  start: [number, number, number];
  /** Size, per axis. */
  size: [number, number, number];
}

/** The start range of a box of `side` voxels on an axis of `dim`: nnssl's {3 … dim − side − 3}, the margin shrunk where it does not fit. */
export function startRange(dim: number, side: number): [number, number] {
  const margin = Math.min(3, Math.floor((dim - side) / 2));
  return [margin, dim - side - margin];
}

function drawBox(shape: readonly number[], rng: Rng, side: (dim: number) => number): PaintBox {
  const size = shape.map(side) as [number, number, number];
  const start = shape.map((dim, a) => {
    const [lo, hi] = startRange(dim, size[a]);
    return rng.intRange(lo, hi);
  }) as [number, number, number];
  return { start, size };
}

/** The in-painting side range of an axis of `dim` voxels: {⌊dim/6⌋ … ⌊dim/3⌋}. */
export function inPaintSides(dim: number): [number, number] {
  return [Math.floor(dim / 6), Math.floor(dim / 3)];
}

/** The out-painting side range of an axis of `dim` voxels: dim − {⌊3·dim/7⌋ … ⌊4·dim/7⌋}. */
export function outPaintSides(dim: number): [number, number] {
  return [dim - Math.floor((4 * dim) / 7), dim - Math.floor((3 * dim) / 7)];
}

/** Draws in-painting boxes: up to `max` (5), each while U < `continueRate` (0.95). */
export function drawInPaintBoxes(
  shape: readonly [number, number, number],
  rng: Rng,
  options: { max?: number; continueRate?: number } = {},
): PaintBox[] {
  const max = options.max ?? 5;
  const rate = options.continueRate ?? 0.95;
  const boxes: PaintBox[] = [];
  while (boxes.length < max && rng.next() < rate) {
    boxes.push(drawBox(shape, rng, (dim) => {
      const [lo, hi] = inPaintSides(dim);
      return rng.intRange(lo, hi);
    }));
  }
  return boxes;
}

/** Draws out-painting boxes: one, then up to `more` (4) further ones, each while U < `continueRate` (0.95). */
export function drawOutPaintBoxes(
  shape: readonly [number, number, number],
  rng: Rng,
  options: { more?: number; continueRate?: number } = {},
): PaintBox[] {
  const more = options.more ?? 4;
  const rate = options.continueRate ?? 0.95;
  const side = (dim: number) => dim - rng.intRange(Math.floor((3 * dim) / 7), Math.floor((4 * dim) / 7));
  const boxes = [drawBox(shape, rng, side)];
  while (boxes.length < 1 + more && rng.next() < rate) boxes.push(drawBox(shape, rng, side));
  return boxes;
}

/** Fills each box of `data` (`[D, H, W]`) with U[0, 1) noise from `noise`, in place, box by box in C order. */
export function inPaint(
  data: Float32Array,
  shape: readonly [number, number, number],
  boxes: readonly PaintBox[],
  noise: Rng,
): void {
  const [, H, W] = shape;
  for (const { start: [d0, h0, w0], size: [sd, sh, sw] } of boxes) {
    for (let d = d0; d < d0 + sd; d++) {
      for (let h = h0; h < h0 + sh; h++) {
        const row = (d * H + h) * W + w0;
        for (let w = 0; w < sw; w++) data[row + w] = noise.next();
      }
    }
  }
}

/**
 * Out-painting: a new array of U[0, 1) noise (C order from `noise`) in which every box holds `data`'s
 * voxels. `data` is not changed.
 */
export function outPaint(
  data: Float32Array,
  shape: readonly [number, number, number],
  boxes: readonly PaintBox[],
  noise: Rng,
): Float32Array {
  const [, H, W] = shape;
  const out = new Float32Array(data.length);
  for (let i = 0; i < out.length; i++) out[i] = noise.next();
  for (const { start: [d0, h0, w0], size: [sd, sh, sw] } of boxes) {
    for (let d = d0; d < d0 + sd; d++) {
      for (let h = h0; h < h0 + sh; h++) {
        const row = (d * H + h) * W + w0;
        out.set(data.subarray(row, row + sw), row);
      }
    }
  }
  return out;
}

/** What {@link paint} did. */
export type PaintKind = "in" | "out";

/**
 * The painting of one sample, once it is decided to paint: in-painting with probability `inpaintRate`
 * (0.2), else out-painting; boxes from `rng.fork("boxes")`, noise from `rng.fork("noise")`. Returns the
 * painted array (`data` itself for in-painting, a new array for out-painting), the kind and the boxes.
 */
export function paint(
  data: Float32Array,
  shape: readonly [number, number, number],
  rng: Rng,
  inpaintRate = 0.2,
): { data: Float32Array; kind: PaintKind; boxes: PaintBox[] } {
  const boxRng = rng.fork("boxes");
  const noise = rng.fork("noise");
  if (rng.next() < inpaintRate) {
    const boxes = drawInPaintBoxes(shape, boxRng);
    inPaint(data, shape, boxes, noise);
    return { data, kind: "in", boxes };
  }
  const boxes = drawOutPaintBoxes(shape, boxRng);
  return { data: outPaint(data, shape, boxes, noise), kind: "out", boxes };
}
