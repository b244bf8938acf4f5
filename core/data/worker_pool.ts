/**
 * A small pool of Deno module Workers with a task queue, used by preprocessing and the patch loader.
 * Results come back as transferable buffers. A task that throws rejects only its own promise (a
 * {@link DataFileError} keeps its path and problem across the worker boundary); a worker that crashes
 * fails its in-flight tasks with the reason and is replaced, so one bad file never stops the pool.
 *
 * The worker side is {@link serveWorker}: the worker module calls it with a setup function that turns the
 * pool's `init` value into a task handler.
 *
 * @module
 */
import { DataFileError } from "./errors.ts";

/** Main → worker messages. */
type ToWorker = { kind: "init"; init: unknown } | { kind: "task"; id: number; request: unknown };
/** Worker → main messages. */
type FromWorker =
  | { kind: "result"; id: number; result: unknown }
  | { kind: "error"; id: number; error: SerializedError }
  | { kind: "fatal"; error: SerializedError };

interface SerializedError {
  message: string;
  path?: string;
  problem?: string;
}

function serializeError(error: unknown): SerializedError {
  if (error instanceof DataFileError) {
    return { message: error.message, path: error.path, problem: error.problem };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

function deserializeError(error: SerializedError): Error {
  return error.path !== undefined && error.problem !== undefined
    ? new DataFileError(error.path, error.problem)
    : new Error(error.message);
}

/** What a task handler returns: the result and the buffers to transfer (not copy) to the main thread. */
export interface TaskResult<Res> {
  /** The value the main thread receives. */
  result: Res;
  /** Buffers moved rather than copied (they become unusable in the worker). */
  transfer?: Transferable[];
}

/** Options of {@link createWorkerPool}. */
export interface WorkerPoolOptions {
  /** Number of workers (at least 1). */
  size: number;
  /** Sent once to each worker before its first task (structured-cloned). */
  init?: unknown;
  /** Tasks handed to one worker at a time (default 1; 2 hides the message latency for short tasks). */
  maxInFlight?: number;
}

/** A pool of workers running one module. */
export interface WorkerPool<Req, Res> {
  /** Number of workers. */
  readonly size: number;
  /** Queues a task; resolves with its result or rejects with its error. */
  run(request: Req, transfer?: Transferable[]): Promise<Res>;
  /** Tasks queued or running. */
  pending(): number;
  /** Drops queued tasks that `keep` rejects (their promises reject with "cancelled"). */
  cancel(keep: (request: Req) => boolean): void;
  /** Terminates the workers; queued and running tasks reject. */
  close(): void;
}

interface Job {
  id: number;
  request: unknown;
  transfer: Transferable[];
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  running: Map<number, Job>;
}

/** Starts `options.size` workers running `url` (a module that calls {@link serveWorker}). */
export function createWorkerPool<Req, Res>(url: URL, options: WorkerPoolOptions): WorkerPool<Req, Res> {
  const size = Math.max(1, Math.floor(options.size));
  const maxInFlight = Math.max(1, options.maxInFlight ?? 1);
  const queue: Job[] = [];
  const slots: Slot[] = [];
  let nextId = 0;
  let closed = false;

  const failAll = (slot: Slot, error: Error) => {
    for (const job of slot.running.values()) job.reject(error);
    slot.running.clear();
  };

  const spawn = (index: number) => {
    const worker = new Worker(url.href, { type: "module" });
    const slot: Slot = { worker, running: new Map() };
    slots[index] = slot;
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.kind === "fatal") {
        failAll(slot, new Error(`worker failed to start: ${message.error.message}`));
        return;
      }
      const job = slot.running.get(message.id);
      if (!job) return;
      slot.running.delete(message.id);
      if (message.kind === "result") job.resolve(message.result);
      else job.reject(deserializeError(message.error));
      pump();
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // keep the main thread alive
      failAll(slot, new Error(`worker crashed: ${event.message}`));
      worker.terminate();
      if (!closed) {
        spawn(index);
        pump();
      }
    };
    worker.postMessage({ kind: "init", init: options.init } satisfies ToWorker);
  };

  const pump = () => {
    for (const slot of slots) {
      while (!closed && queue.length > 0 && slot.running.size < maxInFlight) {
        const job = queue.shift()!;
        slot.running.set(job.id, job);
        slot.worker.postMessage(
          { kind: "task", id: job.id, request: job.request } satisfies ToWorker,
          job.transfer,
        );
      }
    }
  };

  for (let i = 0; i < size; i++) spawn(i);

  return {
    size,
    run(request, transfer = []) {
      if (closed) return Promise.reject(new Error("worker pool is closed"));
      return new Promise<Res>((resolve, reject) => {
        queue.push({ id: nextId++, request, transfer, resolve: resolve as (v: unknown) => void, reject });
        pump();
      });
    },
    pending: () => queue.length + slots.reduce((n, s) => n + s.running.size, 0),
    cancel(keep) {
      for (let i = queue.length - 1; i >= 0; i--) {
        if (!keep(queue[i].request as Req)) queue.splice(i, 1)[0].reject(new Error("cancelled"));
      }
    },
    close() {
      if (closed) return;
      closed = true;
      for (const job of queue.splice(0)) job.reject(new Error("worker pool closed"));
      for (const slot of slots) {
        failAll(slot, new Error("worker pool closed"));
        slot.worker.terminate();
      }
    },
  };
}

/**
 * The worker side of the pool: call once at the top level of a worker module. `setup` receives the
 * pool's `init` value and returns the task handler; tasks run one after another per worker.
 */
export function serveWorker<Init, Req, Res>(
  setup: (
    init: Init,
  ) =>
    | Promise<(request: Req) => Promise<TaskResult<Res>> | TaskResult<Res>>
    | ((request: Req) => Promise<TaskResult<Res>> | TaskResult<Res>),
): void {
  const scope = self as unknown as {
    onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
    postMessage: (m: FromWorker, t?: Transferable[]) => void;
  };
  let handler: Promise<(request: Req) => Promise<TaskResult<Res>> | TaskResult<Res>> | undefined;
  let chain: Promise<void> = Promise.resolve();
  scope.onmessage = (event) => {
    const message = event.data;
    if (message.kind === "init") {
      handler = Promise.resolve(setup(message.init as Init));
      handler.catch((error) => scope.postMessage({ kind: "fatal", error: serializeError(error) }));
      return;
    }
    const { id, request } = message;
    chain = chain.then(async () => {
      try {
        const handle = await handler!;
        const { result, transfer } = await handle(request as Req);
        scope.postMessage({ kind: "result", id, result }, transfer ?? []);
      } catch (error) {
        scope.postMessage({ kind: "error", id, error: serializeError(error) });
      }
    });
  };
}
