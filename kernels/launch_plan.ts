/**
 * The launch planner: the one place that knows the storage-binding limits. Every kernel whose tensors may
 * exceed `maxStorageBufferBindingSize` splits its launches through it.
 *
 * The window ({@link windowOf}). A kernel that binds part of a tensor binds the byte range from the aligned
 * offset at or before the first element it needs (`minStorageBufferOffsetAlignment`) to the end of the last,
 * rounded up to 16 bytes and at least 16 bytes, never past the buffer. It reads element i of the tensor at
 * index i − `first` of the binding. Why 16: it is the largest element any kernel declares (`array<vec4<f32>>`
 * in the conv GEMMs' vec4 views, the reductions' partial states); WebGPU sizes a runtime array as
 * ⌊binding / stride⌋, so a binding rounded to 4 would hide the last vec4 and one under 16 bytes is invalid for
 * a vec4 array (scalar f32/f16 arrays only needed a multiple of 4, the minimum the reductions used before).
 * `first` is negative when the tensor's range starts past an aligned offset (sub-views, attention's unaligned
 * heads): kernels that add a u32 offset to absolute indices (chunked.ts) take {@link indexShift}, −first
 * mod 2³², which wraps back when added; kernels that subtract a non-negative base (the conv GEMMs, whose
 * tensors start aligned so that vec4 views stay aligned) use `first` itself.
 *
 * Three planners build on it:
 * - {@link planWindows}, linear: `items` consecutive items (heads, rows, a run of one tensor axis, single
 *   elements); every operand lays item i out at element `i · itemStride` of its range and spans `itemExtent`
 *   elements from there (stride 0: every item reads the same elements, e.g. a broadcast bias). Windows of
 *   equally many items, each operand's sub-range given by the window rule with an element `base` (the
 *   window's first item inside the binding). When every whole range already fits and starts aligned, one
 *   window over the unchanged ranges (bases 0), the common case. `maxItems` caps a window's items (e.g. a
 *   workgroup-count limit); `granule` makes every window but the last a multiple of that many items (e.g.
 *   whole u32 words of packed u8 output).
 * - {@link planRuns}, the longest fitting run: cuts units into consecutive runs, each the longest for which
 *   a predicate (usually "every operand's window fits") holds, by bisection; for layouts the linear model
 *   cannot state (index maps, reductions split into pieces).
 * - {@link planShrink}, multi-dimensional: named chunk sizes (batch, channels, depth, …) shrunk from the full
 *   extents, by bisection along the dimensions each span rule lists, until every tensor's span (elements of
 *   a given size, as a function of the chunk sizes) fits {@link spanLimitBytes}.
 * Work that cannot be split finely enough (one item, unit or innermost slice above a binding) raises a
 * {@link BindingTooLargeError} naming the kernel.
 *
 * Pure: no GPU, so tests force any limit. Users: head_chunks.ts (attention, RoPE; attention.ts binds
 * its shared operands whole through windowOf), elementwise.ts, copy.ts (`runFill`; the strided gather and
 * scatter: windowOf, planRuns, spanLimitBytes), the optimizer's arena windows, gather.ts, softmax.ts, philox.ts, matmul.ts (planWindows);
 * chunked.ts (norms, activations, pooling, resampling, losses: windowOf, planRuns); reduce.ts (planWindows,
 * windowOf); the conv launchers (conv3d_forward/backward_data/backward_weight/bias_grad.ts: windowOf,
 * planShrink, planRuns, spanLimitBytes); the GPU augmentation's per-sample bindings (core/train/gpu_augment.ts).
 */
import { BindingTooLargeError } from "../core/gpu/errors.ts";

/** The part of a buffer range the planner reads: where the tensor lies and how big its buffer is. */
export interface PlanRange {
  /** Byte offset of element 0 in the buffer. */
  offset?: number;
  /** Bytes of the tensor's range. */
  size: number;
  /** Bytes of the whole buffer (sub-ranges never run past it). */
  buffer: { size: number };
}

/** The device limits the planner honours. */
export interface PlanLimits {
  maxStorageBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
}

/** Every window binding is a multiple of this many bytes (unless cut at its buffer's end) and at least as big. */
export const WINDOW_GRANULE = 16;

/** A binding over part of a tensor (see the header): a sub-range of its buffer and where it starts. */
export interface ElementWindow<R extends PlanRange = PlanRange> {
  /** The sub-range to bind: the tensor's range with a new (aligned) offset and size. */
  binding: R & { offset: number };
  /**
   * Element index (relative to the tensor's element 0) of the binding's first element: element i is at
   * index i − first of the binding. Negative when the range starts past an aligned offset.
   */
  first: number;
}

/**
 * The window of elements [lo, hi) (`elementBytes` bytes each) of the tensor in `range`: from the aligned
 * offset at or before element lo to element hi, rounded up to {@link WINDOW_GRANULE} bytes (at least that
 * many; an empty run binds them at lo), cut at the buffer's end.
 * @throws RangeError when the range's offset or the alignment is not a multiple of the element size.
 */
export function windowOf<R extends PlanRange>(
  limits: Pick<PlanLimits, "minStorageBufferOffsetAlignment">,
  range: R,
  elementBytes: number,
  lo: number,
  hi: number,
): ElementWindow<R> {
  const align = limits.minStorageBufferOffsetAlignment;
  const offset = range.offset ?? 0;
  if (offset % elementBytes !== 0 || align % elementBytes !== 0) {
    throw new RangeError(
      `launch plan: a range at byte ${offset} is not aligned to its ${elementBytes}-byte elements`,
    );
  }
  const start = offset + lo * elementBytes;
  const aligned = Math.floor(start / align) * align;
  const end = offset + Math.max(lo, hi) * elementBytes;
  const wanted = Math.max(WINDOW_GRANULE, Math.ceil((end - aligned) / WINDOW_GRANULE) * WINDOW_GRANULE);
  const size = Math.min(range.buffer.size - aligned, wanted);
  return { binding: { ...range, offset: aligned, size }, first: (aligned - offset) / elementBytes };
}

/**
 * The u32 a kernel adds (mod 2³²) to an absolute element index to index the window's binding: −first,
 * wrapped (a window before an unaligned range start has first < 0).
 */
export function indexShift(w: ElementWindow): number {
  return -w.first >>> 0;
}

/**
 * Bytes of elements a window may span (from its first element to past its last) so that its binding stays
 * within `maxStorageBufferBindingSize` wherever it starts: the limit less the worst alignment slack in front
 * (alignment − element size) and the rounding at the end (granule − 1).
 */
export function spanLimitBytes(limits: PlanLimits, elementBytes: number): number {
  return Math.max(
    0,
    limits.maxStorageBufferBindingSize - (limits.minStorageBufferOffsetAlignment - elementBytes) -
      (WINDOW_GRANULE - 1),
  );
}

function tooLarge(label: string, what: string): BindingTooLargeError {
  return new BindingTooLargeError(
    `${label}: ${what} needs a binding above this device's maxStorageBufferBindingSize; split the tensor ` +
      `(smaller batch or volume)`,
  );
}

// ---------------------------------------------------------------------------------------------------
// Linear windows

/** One operand of the work: its range and how items map onto its elements. */
export interface PlanOperand<R extends PlanRange = PlanRange> {
  range: R;
  /** Bytes per element (1, 2, 4 or 16); the range's offset must be a multiple of it. */
  elementBytes: number;
  /** Elements between item i and item i + 1 (0: every item reads the same elements). */
  itemStride: number;
  /** Elements one item spans, from its first element to its last plus one. */
  itemExtent: number;
}

/** One dispatch's share of the items. */
export interface LaunchWindow<R extends PlanRange = PlanRange> {
  /** First item of the window. */
  item0: number;
  /** Items in the window. */
  items: number;
  /** One sub-range per operand, in the order given: the operand's buffer with a new offset and size. */
  ranges: (R & { offset: number })[];
  /** Element offset of the window's first item inside each sub-range. */
  bases: number[];
}

/** Options of {@link planWindows}. */
export interface PlanOptions {
  /** Most items in one window (default: no cap). */
  maxItems?: number;
  /** Every window but the last holds a multiple of this many items (default 1). */
  granule?: number;
  /** The kernel's name, for errors. */
  label?: string;
}

function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * Splits `items` items into windows whose sub-ranges of every operand fit one binding.
 * @throws BindingTooLargeError when one granule of items of some operand is larger than a binding can be.
 */
export function planWindows<R extends PlanRange>(
  limits: PlanLimits,
  operands: readonly PlanOperand<R>[],
  items: number,
  options: PlanOptions = {},
): LaunchWindow<R>[] {
  const limit = limits.maxStorageBufferBindingSize;
  const granule = options.granule ?? 1;
  const label = options.label ?? "kernel";
  if ((options.maxItems ?? Infinity) < granule) {
    throw new RangeError(`${label}: maxItems ${options.maxItems} is below the granule of ${granule} items`);
  }
  const maxItems = Math.floor((options.maxItems ?? Infinity) / granule) * granule;
  if (items <= 0) return [];
  for (const o of operands) {
    if (
      (o.range.offset ?? 0) % o.elementBytes !== 0 ||
      limits.minStorageBufferOffsetAlignment % o.elementBytes !== 0
    ) {
      throw new RangeError(
        `${label}: an operand's offset is not a multiple of its ${o.elementBytes}-byte elements`,
      );
    }
    if (o.itemStride < 0 || o.itemExtent < 0) {
      throw new RangeError(`${label}: negative item stride or extent`);
    }
  }
  // the unchanged ranges only where each can be bound as it is: within the limit and at an aligned offset
  // (a caller's sub-range, e.g. one run of a split elementwise op, may start anywhere)
  const align = limits.minStorageBufferOffsetAlignment;
  if (
    items <= maxItems &&
    operands.every((o) => (o.range.offset ?? 0) % align === 0 && align4(o.range.size) <= limit)
  ) {
    return [{
      item0: 0,
      items,
      ranges: operands.map((o) => ({ ...o.range, offset: o.range.offset ?? 0 })),
      bases: operands.map(() => 0),
    }];
  }
  let perWindow = Math.min(items, maxItems);
  for (const o of operands) {
    const eb = o.elementBytes;
    const room = spanLimitBytes(limits, eb);
    const first = o.itemExtent * eb;
    if (first + (granule - 1) * o.itemStride * eb > room) {
      throw tooLarge(label, `${granule} item(s) of ${o.itemExtent} elements (${first} bytes each)`);
    }
    if (o.itemStride > 0) {
      perWindow = Math.min(perWindow, Math.floor((room - first) / (o.itemStride * eb)) + 1);
    }
  }
  if (perWindow < items) perWindow = Math.floor(perWindow / granule) * granule;
  const windows: LaunchWindow<R>[] = [];
  for (let item0 = 0; item0 < items; item0 += perWindow) {
    const n = Math.min(perWindow, items - item0);
    const ranges: (R & { offset: number })[] = [];
    const bases: number[] = [];
    for (const o of operands) {
      const lo = item0 * o.itemStride;
      const w = windowOf(limits, o.range, o.elementBytes, lo, lo + (n - 1) * o.itemStride + o.itemExtent);
      ranges.push(w.binding);
      bases.push(lo - w.first);
    }
    windows.push({ item0, items: n, ranges, bases });
  }
  return windows;
}

// ---------------------------------------------------------------------------------------------------
// Longest fitting runs

/**
 * Cuts `units` into consecutive runs [u0, u1) for which `fits` holds, each as long as possible (bisection;
 * `fits` must be monotone: a run that fits stays fitting when shortened).
 * @throws BindingTooLargeError naming `label` when a single unit does not fit.
 */
export function planRuns(
  units: number,
  fits: (u0: number, u1: number) => boolean,
  label: string,
): [number, number][] {
  const runs: [number, number][] = [];
  let u0 = 0;
  while (u0 < units) {
    if (!fits(u0, u0 + 1)) throw tooLarge(label, "one work unit");
    let lo = 1;
    let hi = units - u0;
    if (!fits(u0, u0 + hi)) {
      // invariant: lo fits, hi does not
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (fits(u0, u0 + mid)) lo = mid;
        else hi = mid;
      }
      hi = lo;
    }
    runs.push([u0, u0 + hi]);
    u0 += hi;
  }
  return runs;
}

/** Whether the windows of all `spans` ([range, element bytes, lo, hi]) fit one binding each. */
export function windowsFit(
  limits: PlanLimits,
  spans: readonly (readonly [PlanRange, number, number, number])[],
): boolean {
  return spans.every(([range, bytes, lo, hi]) =>
    windowOf(limits, range, bytes, lo, hi).binding.size <= limits.maxStorageBufferBindingSize
  );
}

// ---------------------------------------------------------------------------------------------------
// Multi-dimensional shrink

/**
 * One tensor's span as a function of the chunk sizes `c` (in elements of `bytes` bytes each), and the
 * dimensions that shrink it, in the order to shrink them.
 */
export interface SpanRule<D extends string> {
  /** The tensor, for errors ("the input"). */
  what: string;
  span: (c: Readonly<Record<D, number>>) => number;
  /** Bytes per element (4 for f32 and f32 accumulators, 2 for f16). */
  bytes: number;
  shrink: readonly D[];
}

/**
 * The largest chunk sizes, starting from `full`, for which every rule's span fits
 * {@link spanLimitBytes}: while a rule does not fit, the first dimension it lists that is still above 1
 * shrinks to the largest size that makes it fit (bisection), or to 1 when none does.
 * @throws BindingTooLargeError naming `label` and the tensor when even chunks of 1 do not fit.
 */
export function planShrink<D extends string>(
  label: string,
  full: Readonly<Record<D, number>>,
  rules: readonly SpanRule<D>[],
  limits: PlanLimits,
): Record<D, number> {
  const c = { ...full } as Record<D, number>;
  const fits = (r: SpanRule<D>, d: Record<D, number>) =>
    r.span(d) * r.bytes <= spanLimitBytes(limits, r.bytes);
  for (let guard = 0; guard < 64; guard++) {
    const bad = rules.find((r) => !fits(r, c));
    if (!bad) return c;
    const dim = bad.shrink.find((d) => c[d] > 1);
    if (dim === undefined) {
      throw new BindingTooLargeError(
        `${label}: ${bad.what} cannot be split finer than ${bad.span(c)} elements (${
          bad.shrink.join(", ")
        } ` +
          `at 1), above this device's maxStorageBufferBindingSize of ${limits.maxStorageBufferBindingSize} bytes`,
      );
    }
    let lo = 1;
    let hi = c[dim] - 1;
    let best = 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (fits(bad, { ...c, [dim]: mid })) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    c[dim] = best;
  }
  throw new Error(`${label}: chunk planning did not converge`);
}
