/**
 * The TensorBoard writer checked against the format with a reader written here, independently of the
 * writer: a bitwise CRC-32C (no table), TFRecord framing, and a small protobuf decoder for Event /
 * Summary / Value. Then a tiny Trainer run: its event file decodes to the values of metrics.jsonl, and
 * the data-wait metric sees a slow batch source.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  type BatchSource,
  readMetrics,
  resolveRunConfig,
  RunConfigSchema,
  runPretraining,
  VERSION,
} from "../../../mod.ts";
import { crc32c, maskedCrc32c, scalarEvent, TfEventsWriter } from "../../../core/train/tfevents.ts";
import { affineTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";
import { randomSource } from "../../fixtures/random_source.ts";
import { gpuTest, seededRandom } from "../../helpers.ts";
import { reportObserver } from "../../../cli/report/run_observer.ts";

/** CRC-32C bit by bit from its definition (reflected Castagnoli polynomial 0x82F63B78). */
function referenceCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc & 1) ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's mask (record_writer.cc: kMaskDelta 0xa282ead8). */
function referenceMask(crc: number): number {
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 2 ** 32;
}

/** Splits a TFRecord file, checking both CRCs of every record against the reference. */
function readRecords(file: Uint8Array): Uint8Array[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  while (at < file.length) {
    const length = Number(view.getBigUint64(at, true));
    assertEquals(
      view.getUint32(at + 8, true),
      referenceMask(referenceCrc32c(file.subarray(at, at + 8))),
      "length CRC",
    );
    const data = file.subarray(at + 12, at + 12 + length);
    assertEquals(view.getUint32(at + 12 + length, true), referenceMask(referenceCrc32c(data)), "data CRC");
    records.push(data);
    at += 16 + length;
  }
  assertEquals(at, file.length, "no trailing bytes");
  return records;
}

type Field = { field: number; wire: number; value: bigint | Uint8Array | DataView };

/** Decodes one protobuf message into its fields (varint, 64-bit, length-delimited, 32-bit). */
function decodeFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const varint = () => {
    let result = 0n, shift = 0n;
    for (;;) {
      const b = bytes[at++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const field = key >> 3, wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      fields.push({ field, wire, value: new DataView(bytes.buffer, bytes.byteOffset + at, n) });
      at += n;
    } else if (wire === 2) {
      const n = Number(varint());
      fields.push({ field, wire, value: bytes.subarray(at, at + n) });
      at += n;
    } else throw new Error(`wire type ${wire}`);
  }
  return fields;
}

interface DecodedEvent {
  wallTime?: number;
  step?: number;
  fileVersion?: string;
  scalars: Record<string, number>;
}

/** event.proto: Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5 }. */
function decodeEvent(bytes: Uint8Array): DecodedEvent {
  const event: DecodedEvent = { scalars: {} };
  for (const f of decodeFields(bytes)) {
    if (f.field === 1) event.wallTime = (f.value as DataView).getFloat64(0, true);
    if (f.field === 2) event.step = Number(f.value as bigint);
    if (f.field === 3) event.fileVersion = new TextDecoder().decode(f.value as Uint8Array);
    if (f.field === 5) {
      // Summary { repeated Value value = 1 }; Value { string tag = 1; float simple_value = 2 }
      for (const v of decodeFields(f.value as Uint8Array).filter((v) => v.field === 1)) {
        const parts = decodeFields(v.value as Uint8Array);
        const tag = new TextDecoder().decode(parts.find((p) => p.field === 1)!.value as Uint8Array);
        event.scalars[tag] = (parts.find((p) => p.field === 2)!.value as DataView).getFloat32(0, true);
      }
    }
  }
  return event;
}

const f32 = (x: number) => Math.fround(x);

Deno.test("crc32c: the known vector crc32c('123456789') = 0xE3069283 and a bitwise reference on random bytes", () => {
  assertEquals(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assertEquals(referenceCrc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const next = seededRandom(7);
  for (const n of [0, 1, 3, 8, 64, 1000]) {
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
    assertEquals(crc32c(bytes), referenceCrc32c(bytes), `${n} bytes`);
    assertEquals(maskedCrc32c(bytes), referenceMask(referenceCrc32c(bytes)), `masked, ${n} bytes`);
  }
});

Deno.test("TfEventsWriter: records with valid CRCs, a file_version event, then the scalars decoded back", async () => {
  const dir = await Deno.makeTempDir();
  const writer = new TfEventsWriter(dir, 1_700_000_000_123);
  assert(/\/events\.out\.tfevents\.1700000000\.[^/]+$/.test(writer.path), writer.path);
  const next = seededRandom(3);
  const written = [0, 5, 123456789012].map((step) => ({
    step,
    wall: 1_700_000_000 + next() * 1000,
    scalars: { "train/loss": next() * 10, lr: next() * 1e-3, "validation/loss": -next() },
  }));
  for (const w of written) await writer.scalars(w.step, w.scalars, w.wall);
  await writer.scalars(9, { nan: NaN });
  const events = readRecords(await Deno.readFile(writer.path)).map(decodeEvent);
  assertEquals(events.length, 5);
  assertEquals(events[0].fileVersion, "brain.Event:2");
  written.forEach((w, i) => {
    const e = events[i + 1];
    assertEquals(e.step, w.step);
    assertEquals(e.wallTime, w.wall);
    assertEquals(e.scalars, Object.fromEntries(Object.entries(w.scalars).map(([k, v]) => [k, f32(v)])));
  });
  assert(Number.isNaN(events[4].scalars.nan));
  // a long Summary (length > 127) exercises multi-byte varints
  const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`metric/${i}`, i * 0.5]));
  assertEquals(decodeEvent(scalarEvent(1, 2, many)).scalars, many);
  await Deno.remove(dir, { recursive: true });
});

/** A source that waits `ms` before each training batch. */
function slowSource(inner: BatchSource, ms: number): BatchSource {
  return {
    batch: (step) => new Promise((done) => setTimeout(() => done(inner.batch(step)), ms)),
    close: () => inner.close(),
  };
}

gpuTest(
  "a Trainer run writes an event file matching metrics.jsonl, logs its data wait, and a report without reconstructions",
  async () => {
    const out = await Deno.makeTempDir();
    const config = resolveRunConfig(
      RunConfigSchema.parse({
        arch: "voxel-mlp-tiny",
        method: "affine-target",
        epochs: 2,
        stepsPerEpoch: 4,
        logEvery: 2,
        validationBatches: 1,
        out,
      }),
      { plugin: voxelMlp, size: "tiny" },
      affineTarget,
    );
    assertEquals(config.tensorboard, true, "on by default");
    const waitMs = 25;
    const validation = randomSource(2, config.batch, config.patch);
    const notes: string[] = [];
    const report = reportObserver({ validation, coreVersion: VERSION, log: (l) => notes.push(l) });
    await runPretraining({
      config,
      arch: voxelMlp,
      method: affineTarget,
      train: slowSource(randomSource(1, config.batch, config.patch), waitMs),
      validation,
      coreVersion: VERSION,
      log: () => {},
      observer: report,
    });
    // a method without reconstruction(): the report says so and has no slices or viewer
    assertEquals([report.path, notes], [`${out}/report.html`, []]);
    const html = await Deno.readTextFile(report.path!);
    assert(
      html.includes("No reconstructions") && !html.includes('class="viewer"'),
      "no reconstruction panel",
    );
    const metrics = await readMetrics(`${out}/metrics.jsonl`);
    const files = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) =>
      n.startsWith("events.out.tfevents.")
    );
    assertEquals(files.length, 1, files.join(", "));
    const events = readRecords(await Deno.readFile(`${out}/${files[0]}`)).map(decodeEvent);
    assertEquals(events[0].fileVersion, "brain.Event:2");
    assertEquals(events.length - 1, metrics.length);
    metrics.forEach((m, i) => {
      const e = events[i + 1];
      assertEquals(e.step, m.step);
      const prefix = m.kind === "train" ? "train" : "validation";
      assertEquals(e.scalars[`${prefix}/loss`], f32(m.loss));
      if (m.kind === "train") {
        assertEquals(e.scalars.lr, f32(m.lr!));
        assertEquals(e.scalars.grad_norm, f32(m.gradNorm!));
        assertEquals(e.scalars.steps_per_second, f32(m.stepsPerSecond!));
        assertEquals(e.scalars.gpu_peak_mib, f32(m.gpuPeakBytes! / 2 ** 20));
        // every step waited at least the source's delay (setTimeout never fires early)
        assert(m.dataWaitSeconds! >= waitMs / 1000 * 0.95, `data wait ${m.dataWaitSeconds}`);
        assertEquals(e.scalars.data_wait_seconds, f32(m.dataWaitSeconds!));
      }
    });

    const off = await Deno.makeTempDir();
    await runPretraining({
      config: { ...config, out: off, tensorboard: false, epochs: 1 },
      arch: voxelMlp,
      method: affineTarget,
      train: randomSource(1, config.batch, config.patch),
      coreVersion: VERSION,
      log: () => {},
    });
    assert(
      ![...Deno.readDirSync(off)].some((e) => e.name.startsWith("events.")),
      "tensorboard: false writes none",
    );
    await Deno.remove(out, { recursive: true });
    await Deno.remove(off, { recursive: true });
  },
);
