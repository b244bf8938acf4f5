/**
 * The launch planner: splits a run of work items into windows whose bindings fit the device.
 *
 * Model: the work is `items` consecutive items (heads, rows, a run of one tensor axis, single elements).
 * Every operand (a tensor a kernel binds) lays item `i` out at element `i · itemStride` of its range and
 * spans `itemExtent` elements from there (stride 0: every item reads the same elements, e.g. a broadcast
 * bias). A window covers items [item0, item0 + items); for each operand it binds the sub-range that
 * starts at the aligned byte offset at or before the window's first element
 * (`minStorageBufferOffsetAlignment`) and passes the remaining distance as an element `base` the kernel
 * adds to its indices. Every window's bindings are at most `maxStorageBufferBindingSize` bytes, a multiple
 * of 4 and at least 16, and never run past their buffer. When every whole range already fits, the plan is
 * one window over the unchanged ranges (bases 0), the common case. `maxItems` caps a window's items (e.g. a
 * workgroup-count limit); `granule` makes every window but the last a multiple of that many items (e.g.
 * whole u32 words of packed u8 output).
 *
 * Pure: no GPU, so tests can force any limit. Users: head_chunks.ts (attention, RoPE), elementwise.ts.
 */

/** The part of a buffer range the planner reads: where the tensor lies and how big its buffer is. */
export interface PlanRange {
  /** Byte offset of element 0 in the buffer. */
  offset?: number;
  /** Bytes of the tensor's range. */
  size: number;
  /** Bytes of the whole buffer (sub-ranges never run past it). */
  buffer: { size: number };
}

/** One operand of the work: its range and how items map onto its elements. */
export interface PlanOperand<R extends PlanRange = PlanRange> {
  range: R;
  /** Bytes per element (1, 2 or 4); the range's offset must be a multiple of it. */
  elementBytes: number;
  /** Elements between item i and item i + 1 (0: every item reads the same elements). */
  itemStride: number;
  /** Elements one item spans, from its first element to its last plus one. */
  itemExtent: number;
}

/** The device limits the planner honours. */
export interface PlanLimits {
  maxStorageBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
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
  /** Label for errors, e.g. the kernel's name. */
  label?: string;
}

const MIN_BINDING = 16;

function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * Splits `items` items into windows whose sub-ranges of every operand fit one binding.
 * @throws RangeError when one granule of items of some operand is larger than a binding can be.
 */
export function planWindows<R extends PlanRange>(
  limits: PlanLimits,
  operands: readonly PlanOperand<R>[],
  items: number,
  options: PlanOptions = {},
): LaunchWindow<R>[] {
  const limit = limits.maxStorageBufferBindingSize;
  const align = limits.minStorageBufferOffsetAlignment;
  const granule = options.granule ?? 1;
  const label = options.label ? `${options.label}: ` : "";
  if ((options.maxItems ?? Infinity) < granule) {
    throw new RangeError(`${label}maxItems ${options.maxItems} is below the granule of ${granule} items`);
  }
  const maxItems = Math.floor((options.maxItems ?? Infinity) / granule) * granule;
  if (items <= 0) return [];
  for (const o of operands) {
    if ((o.range.offset ?? 0) % o.elementBytes !== 0 || align % o.elementBytes !== 0) {
      throw new RangeError(
        `${label}an operand's offset is not a multiple of its ${o.elementBytes}-byte elements`,
      );
    }
    if (o.itemStride < 0 || o.itemExtent < 0) throw new RangeError(`${label}negative item stride or extent`);
  }
  if (items <= maxItems && operands.every((o) => align4(o.range.size) <= limit)) {
    return [{
      item0: 0,
      items,
      ranges: operands.map((o) => ({ ...o.range, offset: o.range.offset ?? 0 })),
      bases: operands.map(() => 0),
    }];
  }
  // Worst case of the alignment slack in front of a window (align - elementBytes) plus rounding up to 4.
  let perWindow = Math.min(items, maxItems);
  for (const o of operands) {
    const eb = o.elementBytes;
    const room = limit - (align - eb) - 3;
    const first = o.itemExtent * eb;
    if (first + (granule - 1) * o.itemStride * eb > room) {
      throw new RangeError(
        `${label}${granule} item(s) of ${o.itemExtent} elements (${first} bytes each) do not fit a storage ` +
          `binding of ${limit} bytes`,
      );
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
      const eb = o.elementBytes;
      const start = (o.range.offset ?? 0) + item0 * o.itemStride * eb;
      const end = start + ((n - 1) * o.itemStride + o.itemExtent) * eb;
      const aligned = Math.floor(start / align) * align;
      const size = Math.min(o.range.buffer.size - aligned, Math.max(MIN_BINDING, align4(end - aligned)));
      ranges.push({ ...o.range, offset: aligned, size });
      bases.push((start - aligned) / eb);
    }
    windows.push({ item0, items: n, ranges, bases });
  }
  return windows;
}
