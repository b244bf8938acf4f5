/**
 * TensorBoard event files (`events.out.tfevents.<unix seconds>.<host>`), written without TensorFlow so
 * that `tensorboard --logdir runs/` shows voxssl runs beside PyTorch ones.
 *
 * The format (tensorflow/core/lib/io/record_writer.cc, tensorflow/core/util/event.proto): a file is a
 * sequence of records
 *
 *   u64 length (LE) · u32 masked CRC32C of those 8 bytes · data · u32 masked CRC32C of data
 *
 * where the mask is `((crc >>> 15) | (crc << 17)) + 0xa282ead8` and data is a serialized `Event`
 * protobuf. The first record carries `file_version: "brain.Event:2"`; each later one a `Summary` of
 * scalar values (`simple_value`, a float32) under a tag, with `wall_time` (seconds) and `step`.
 *
 * @module
 */
import { hostname } from "node:os";
import { join } from "node:path";
import type { MetricsRecord } from "./metrics.ts";

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: a rotation plus a constant, so that CRCs of CRCs stay well distributed. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Frames `data` as one TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A minimal protobuf writer: the field kinds an Event needs. */
class ProtoWriter {
  #bytes: number[] = [];
  #varint(value: number | bigint): void {
    let v = BigInt(value);
    while (v >= 0x80n) {
      this.#bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#bytes.push(Number(v));
  }
  #tag(field: number, wire: number): void {
    this.#varint((field << 3) | wire);
  }
  double(field: number, value: number): this {
    this.#tag(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.#bytes.push(...b);
    return this;
  }
  float(field: number, value: number): this {
    this.#tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#bytes.push(...b);
    return this;
  }
  int64(field: number, value: number): this {
    this.#tag(field, 0);
    this.#varint(value);
    return this;
  }
  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, 2);
    this.#varint(value.length);
    this.#bytes.push(...value);
    return this;
  }
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

/**
 * A serialized `Event` (event.proto: wall_time = 1 double, step = 2 int64, file_version = 3 string,
 * summary = 5 Summary) whose Summary holds one `Value` (tag = 1 string, simple_value = 2 float) per
 * scalar.
 */
export function scalarEvent(wallTime: number, step: number, scalars: Record<string, number>): Uint8Array {
  const summary = new ProtoWriter();
  for (const [tag, value] of Object.entries(scalars)) {
    summary.bytes(1, new ProtoWriter().string(1, tag).float(2, value).finish());
  }
  return new ProtoWriter().double(1, wallTime).int64(2, step).bytes(5, summary.finish()).finish();
}

/** The first event of a file: its format version. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return new ProtoWriter().double(1, wallTime).string(3, "brain.Event:2").finish();
}

/** The host's name, or "localhost" where it may not be read (the plugin sandbox grants no `sys`). */
function hostName(): string {
  try {
    return hostname().replace(/[^A-Za-z0-9._-]/g, "_") || "localhost";
  } catch {
    return "localhost";
  }
}

/**
 * Appends scalar events to one event file in a run folder. Each run (and each resume) opens a new file,
 * as TensorFlow's writers do; TensorBoard reads every file of the folder.
 */
export class TfEventsWriter {
  /** The event file's path. */
  readonly path: string;
  #started = false;

  /** An event file in `dir`, named for `now` and the host. */
  constructor(dir: string, now = Date.now()) {
    this.path = join(dir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostName()}`);
  }

  /** Writes scalars (non-finite values included: TensorBoard shows NaN) at `step`. */
  async scalars(step: number, scalars: Record<string, number>, wallTime = Date.now() / 1000): Promise<void> {
    const records: Uint8Array[] = [];
    if (!this.#started) records.push(tfRecord(fileVersionEvent(wallTime)));
    records.push(tfRecord(scalarEvent(wallTime, step, scalars)));
    const size = records.reduce((n, r) => n + r.length, 0);
    const out = new Uint8Array(size);
    let at = 0;
    for (const r of records) {
      out.set(r, at);
      at += r.length;
    }
    await Deno.writeFile(this.path, out, { append: this.#started });
    this.#started = true;
  }
}

/**
 * The TensorBoard scalars of one metrics.jsonl record: `train/loss`, `train/<metric>`, `validation/…`,
 * and for training intervals `lr`, `grad_norm`, `loss_scale`, `skipped_steps`, `steps_per_second`,
 * `data_wait_seconds`, `gpu_memory_mib`, `gpu_peak_mib` (those the record has).
 */
export function metricsScalars(record: MetricsRecord): Record<string, number> {
  const prefix = record.kind === "train" ? "train" : "validation";
  const out: Record<string, number> = { [`${prefix}/loss`]: record.loss };
  for (const [name, value] of Object.entries(record.metrics ?? {})) out[`${prefix}/${name}`] = value;
  const optional: [string, number | undefined][] = [
    ["lr", record.lr],
    ["grad_norm", record.gradNorm],
    ["loss_scale", record.lossScale],
    ["skipped_steps", record.skippedSteps],
    ["steps_per_second", record.stepsPerSecond],
    ["data_wait_seconds", record.dataWaitSeconds],
    ["gpu_memory_mib", record.gpuMemoryBytes === undefined ? undefined : record.gpuMemoryBytes / 2 ** 20],
    ["gpu_peak_mib", record.gpuPeakBytes === undefined ? undefined : record.gpuPeakBytes / 2 ** 20],
  ];
  for (const [tag, value] of optional) if (value !== undefined) out[tag] = value;
  return out;
}
