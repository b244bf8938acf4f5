/**
 * The activation-checkpointing setting of an architecture config: "none", every segment (the
 * architecture's unit: "stages" for ResEnc's encoder stages, "blocks" for Primus's transformer blocks),
 * or a list of segment indices. The recomputation itself is `checkpoint()` (core/tensor/checkpoint.ts).
 */

/** "none", the architecture's unit name for every segment, or segment indices (0-based). */
export type ActivationCheckpointing = string | readonly number[];

/**
 * The indices of the `count` segments a setting checkpoints. `all` is the architecture's word for every
 * segment ("stages", "blocks"); an index outside [0, count) is a RangeError naming `field`.
 * @example
 * const selected = checkpointedSegments(config.activationCheckpointing, 3, "stages", "resenc: activationCheckpointing");
 */
export function checkpointedSegments(
  setting: ActivationCheckpointing,
  count: number,
  all: string,
  field: string,
): ReadonlySet<number> {
  if (setting === "none") return new Set();
  if (setting === all) return new Set(Array.from({ length: count }, (_, i) => i));
  if (typeof setting === "string") {
    throw new RangeError(`${field} must be "none", "${all}" or a list of indices, got "${setting}"`);
  }
  for (const i of setting) {
    if (!Number.isInteger(i) || i < 0 || i >= count) {
      throw new RangeError(`${field}: index ${i} is outside the ${count} ${all} (0 to ${count - 1})`);
    }
  }
  return new Set(setting);
}
