/**
 * Progress output in its three forms, driven by a fake clock and a fake stream: plain lines (no
 * carriage returns or escape codes) when not on a terminal, JSON objects with `--log json`, a redrawn
 * bar on a terminal; and `pretrain`'s wiring of it.
 */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { createProgress, formatDuration, logMode } from "../../cli/progress.ts";
import { runProgress } from "../../cli/run_progress.ts";
import type { MetricsRecord, Run } from "../../core/train/mod.ts";

function fakeStream(terminal: boolean) {
  let text = "";
  return {
    isTerminal: () => terminal,
    writeSync(bytes: Uint8Array) {
      text += new TextDecoder().decode(bytes);
      return bytes.length;
    },
    get text() {
      return text;
    },
  };
}

Deno.test("progress: plain lines at every 10% with rate and ETA when not on a terminal", () => {
  const sink = fakeStream(false);
  let now = 0;
  const printed: string[] = [];
  const p = createProgress("index", 50, {
    sink,
    clock: () => now,
    unit: "files",
    print: (l) => printed.push(l),
  });
  assertEquals(p.form, "plain");
  for (let done = 1; done <= 50; done++) {
    now += 200; // 5 files/s
    p.update(done, `file${done}.nii.gz`);
    if (done === 20) p.log("a line of the command's own");
  }
  p.finish();
  const lines = sink.text.trimEnd().split("\n");
  assertEquals(lines.length, 11, sink.text); // the first update, then 10%, 20%, …, 100%; finish() does not repeat 100%
  assert(!sink.text.includes("\r") && !sink.text.includes("\x1b"), "no carriage return or escape codes");
  assertEquals(lines[2], "index: 10/50 (20%) 5.0 files/s, 2s elapsed, ETA 8s  file10.nii.gz");
  assertEquals(lines[10], "index: 50/50 (100%) 5.0 files/s, 10s elapsed, ETA 0s  file50.nii.gz");
  assertEquals(printed, ["a line of the command's own"]);
});

Deno.test("progress: plain lines at least every 30 s when progress is slow; a last line at finish", () => {
  const sink = fakeStream(false);
  let now = 0;
  const p = createProgress("preprocess", 1000, { mode: "plain", sink, clock: () => now, unit: "volumes" });
  for (let done = 1; done <= 10; done++) {
    now += 10_000;
    p.update(done);
  }
  now += 5_000;
  p.update(11); // 5 s after the last line: silent
  p.finish();
  const lines = sink.text.trimEnd().split("\n");
  // 10 s (first line: decile 0), then 40 s, 70 s, 100 s, and finish's line
  assertEquals(lines.map((l) => l.match(/^preprocess: (\d+)\//)![1]), ["1", "4", "7", "10", "11"]);
  assertEquals(lines[4], "preprocess: 11/1000 (1%) 0.10 volumes/s, 1m45s elapsed");
});

Deno.test("progress --log json: objects with rate and ETA, resumed work not counted, a finish event", () => {
  const sink = fakeStream(true); // json whatever the stream
  let now = 0;
  const p = createProgress("pretrain", 200, {
    mode: "json",
    sink,
    clock: () => now,
    unit: "steps",
    start: 100,
  });
  for (let done = 101; done <= 200; done++) {
    now += 500; // 2 steps/s
    p.update(done, "loss 1.0");
  }
  p.finish();
  const events = sink.text.trimEnd().split("\n").map((l) => JSON.parse(l));
  assertEquals(events.length, 52); // 51%…100% (50 each crossing a percent, 1 at the start) + finish
  assertEquals(events[10], {
    event: "progress",
    task: "pretrain",
    done: 120,
    total: 200,
    fraction: 0.6,
    rate: 2,
    unit: "steps",
    elapsedSeconds: 10,
    etaSeconds: 40,
    detail: "loss 1.0",
  });
  assertEquals(events.at(-1).event, "finish");
  assertEquals(events.at(-1).done, 200);
});

Deno.test("progress on a terminal: one redrawn bar; log() clears it, prints, redraws", () => {
  const sink = fakeStream(true);
  let now = 0;
  const printed: string[] = [];
  const p = createProgress("index", 4, { sink, clock: () => now, print: (l) => printed.push(l) });
  assertEquals(p.form, "tty");
  now = 1000;
  p.update(1, "a.nii");
  p.log("hello");
  now = 2000;
  p.update(4, "d.nii");
  p.finish();
  const ended = sink.text;
  p.log("after the end"); // printed as it is: no bar drawn again under it
  p.finish();
  assertEquals(sink.text, ended, "finish() once; nothing redrawn after it");
  assertEquals(printed, ["hello", "after the end"]);
  assert(
    sink.text.startsWith("\r\x1b[2Kindex [######------------------] 1/4 25% 1.0 items/s 1s eta 3s a.nii"),
    sink.text,
  );
  assert(sink.text.includes("\r\x1b[2K\r\x1b[2Kindex [######"), "log(): cleared, then redrawn");
  assert(sink.text.endsWith("] 4/4 100% 2.0 items/s 2s eta 0s d.nii\n"), JSON.stringify(sink.text));
});

Deno.test("logMode: auto, plain, json; anything else names the flag", () => {
  assertEquals([logMode(undefined), logMode("plain"), logMode("json")], ["auto", "plain", "json"]);
  assertThrows(() => logMode("fancy"), Error, '--log: expected auto, plain or json, got "fancy"');
  assertEquals([formatDuration(42), formatDuration(187), formatDuration(7500), formatDuration(NaN)], [
    "42s",
    "3m07s",
    "2h05m",
    "?",
  ]);
});

Deno.test("pretrain progress: nothing extra in plain form; JSON progress and metrics records with --log json", () => {
  const run = { step: 0, config: { epochs: 2, stepsPerEpoch: 3 } } as unknown as Run;
  const record: MetricsRecord = { kind: "train", step: 3, epoch: 0, loss: 0.5, lr: 0.01 };

  const plain = fakeStream(false);
  const quiet = runProgress("auto", plain);
  for (run.step = 1; run.step <= 6; run.step++) quiet.observer.step?.(run);
  quiet.observer.record?.(record, run);
  quiet.finish();
  assertEquals(plain.text, "", "the Trainer's own lines are the plain progress");

  const json = fakeStream(false);
  const machine = runProgress("json", json);
  for (run.step = 1; run.step <= 6; run.step++) {
    machine.observer.step?.(run);
    if (run.step === 3) machine.observer.record?.(record, run);
  }
  machine.finish();
  const events = json.text.trimEnd().split("\n").map((l) => JSON.parse(l));
  assertEquals(events.filter((e) => e.event === "metrics"), [{ event: "metrics", ...record }]);
  assertEquals(events.filter((e) => e.event === "progress").map((e) => e.done), [1, 2, 3, 4, 5, 6]);
  // the first step (kernel compilation) is not in the rate: no rate until a second step is done
  assertEquals(events.find((e) => e.event === "progress").rate, null);
  assertEquals(events.at(-1), {
    ...events.at(-1),
    event: "finish",
    done: 6,
    total: 6,
    detail: "loss 0.5000",
  });
});
