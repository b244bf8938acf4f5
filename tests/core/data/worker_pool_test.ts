import { DataFileError } from "../../../core/data/errors.ts";
import { createWorkerPool } from "../../../core/data/worker_pool.ts";
import { assertEquals, assertRejects } from "../../assert.ts";

const url = new URL("./pool_worker_fixture.ts", import.meta.url);
type Msg = { values: Float32Array };

Deno.test("createWorkerPool() runs tasks in workers and transfers the results", async () => {
  const pool = createWorkerPool<Msg, Msg>(url, { size: 2, init: { factor: 3 }, maxInFlight: 2 });
  try {
    const inputs = Array.from({ length: 9 }, (_, i) => Float32Array.from([i, i + 0.5]));
    const results = await Promise.all(inputs.map((values) => pool.run({ values })));
    results.forEach((r, i) => assertEquals(Array.from(r.values), [3 * i, 3 * i + 1.5]));
    const sent = Float32Array.from([1, 2]);
    await pool.run({ values: sent }, [sent.buffer]);
    assertEquals(sent.length, 0); // transferred, not copied
    assertEquals(pool.pending(), 0);
  } finally {
    pool.close();
  }
});

Deno.test("createWorkerPool() keeps a task's DataFileError and survives a crashing worker", async () => {
  const pool = createWorkerPool<Msg, Msg>(url, { size: 1, init: { factor: 2 } });
  try {
    const error = await assertRejects(
      () => pool.run({ values: Float32Array.from([-4]) }),
      DataFileError,
      "negative first value",
    );
    assertEquals((error as DataFileError).path, "file--4.nii");
    await assertRejects(
      () => pool.run({ values: Float32Array.from([NaN]) }),
      Error,
      "worker crashed: Uncaught Error: boom",
    );
    // the replacement worker takes the next task
    assertEquals(Array.from((await pool.run({ values: Float32Array.from([5]) })).values), [10]);
  } finally {
    pool.close();
  }
});

Deno.test("WorkerPool.cancel() and close() reject what has not run", async () => {
  const pool = createWorkerPool<Msg, Msg>(url, { size: 1, init: { factor: 1 } });
  const outcome = (p: Promise<Msg>) => p.then(() => "done", (e) => (e as Error).message);
  // one task runs at a time: 0 is dispatched at once, 1..3 wait in the queue
  const tasks = Array.from({ length: 4 }, (_, i) => outcome(pool.run({ values: Float32Array.from([i]) })));
  pool.cancel((r) => r.values[0] !== 2);
  assertEquals(await Promise.all(tasks), ["done", "done", "cancelled", "done"]);
  const late = [
    outcome(pool.run({ values: Float32Array.from([7]) })),
    outcome(pool.run({ values: Float32Array.from([8]) })),
  ];
  pool.close(); // one running, one queued: both reject
  assertEquals(await Promise.all(late), ["worker pool closed", "worker pool closed"]);
  await assertRejects(() => pool.run({ values: Float32Array.from([1]) }), Error, "closed");
});
