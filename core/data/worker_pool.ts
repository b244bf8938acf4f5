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
import { DataFileError, SampleHookError } from "./errors.ts";

/** Main → worker messages. */
type ToWorker = { kind: "init"; init: unknown } | { kind: "task"; id: number; request: unknown };
/** Worker → main messages. */
type FromWorker =
  | { kind: "ready" }
  | { kind: "result"; id: number; result: unknown }
  | { kind: "error"; id: number; error: SerializedError }
  | { kind: "fatal"; error: SerializedError };

interface SerializedError {
  message: string;
  path?: string;
  problem?: string;
  hook?: { plugin: string; where: string; detail: string; denied?: string };
  /** The worker's setup failed: every task of it fails the same way. */
  start?: boolean;
}

function serializeError(error: unknown): SerializedError {
  if (error instanceof DataFileError) {
    return { message: error.message, path: error.path, problem: error.problem };
  }
  if (error instanceof SampleHookError) {
    const detail = error.message.slice(error.message.indexOf("): ") + 3);
    return {
      message: error.message,
      hook: { plugin: error.plugin, where: error.where, detail, denied: error.denied },
    };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

/** A worker whose setup (the `init` handler) failed; the pool cannot run tasks on it. */
export class WorkerStartError extends Error {
  /** An error saying why the worker could not start. */
  constructor(message: string) {
    super(`worker failed to start: ${message}`);
    this.name = "WorkerStartError";
  }
}

function deserializeError(error: SerializedError): Error {
  if (error.hook) {
    const { plugin, where, detail, denied } = error.hook;
    return new SampleHookError(plugin, where, detail, denied);
  }
  if (error.start) return new WorkerStartError(error.message);
  return error.path !== undefined && error.problem !== undefined
    ? new DataFileError(error.path, error.problem)
    : new Error(error.message);
}

/** A task that ran longer than the pool's `taskTimeoutMs`; its worker was stopped and replaced. */
export class TaskTimeoutError extends Error {
  /** The task's request. */
  readonly request: unknown;
  /** The limit it exceeded (ms). */
  readonly timeoutMs: number;
  /** An error for `request`, which exceeded `timeoutMs`. */
  constructor(request: unknown, timeoutMs: number) {
    super(`task did not finish within ${timeoutMs / 1000} s; its worker was stopped`);
    this.name = "TaskTimeoutError";
    this.request = request;
    this.timeoutMs = timeoutMs;
  }
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
  /**
   * Makes the worker for slot `index` (default `new Worker(url)`); e.g. hands out Workers started
   * earlier, while their code could still be read.
   */
  spawn?: (index: number) => Worker;
  /**
   * A task running longer than this (ms, counted from when its worker starts it) rejects with a
   * {@link TaskTimeoutError}; the worker is terminated (its other tasks reject too) and replaced. Default:
   * no limit. This is how a task stuck in an endless loop is caught: a worker cannot be interrupted.
   */
  taskTimeoutMs?: number;
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
  /** When the worker will have started it (its predecessors in the slot finish first). */
  timer?: ReturnType<typeof setTimeout>;
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

  const timeoutMs = options.taskTimeoutMs;
  const failAll = (slot: Slot, error: Error) => {
    for (const job of slot.running.values()) {
      clearTimeout(job.timer);
      job.reject(error);
    }
    slot.running.clear();
  };
  // a worker runs its tasks one after another: the oldest running job is the one being worked on
  const armTimer = (slot: Slot, index: number) => {
    if (timeoutMs === undefined) return;
    const first = slot.running.values().next().value;
    if (!first || first.timer !== undefined) return;
    first.timer = setTimeout(() => {
      if (slots[index] !== slot || !slot.running.has(first.id)) return;
      slot.running.delete(first.id);
      first.reject(new TaskTimeoutError(first.request, timeoutMs));
      failAll(slot, new Error("cancelled: its worker was stopped after another task timed out"));
      slot.worker.terminate();
      replace(index);
    }, timeoutMs);
  };

  // a stopped or crashed worker is replaced; when no replacement can be had, the pool stops
  let broken: Error | undefined;
  const replace = (index: number) => {
    if (closed) return;
    try {
      spawn(index);
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error));
      closed = true;
      for (const job of queue.splice(0)) job.reject(broken);
      for (const slot of slots) {
        failAll(slot, broken);
        slot.worker.terminate();
      }
      return;
    }
    pump();
  };

  const spawn = (index: number) => {
    const worker = options.spawn ? options.spawn(index) : new Worker(url.href, { type: "module" });
    const slot: Slot = { worker, running: new Map() };
    slots[index] = slot;
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.kind === "ready") return;
      if (message.kind === "fatal") {
        failAll(slot, deserializeError({ ...message.error, start: !message.error.hook }));
        return;
      }
      const job = slot.running.get(message.id);
      if (!job) return;
      clearTimeout(job.timer);
      slot.running.delete(message.id);
      if (message.kind === "result") job.resolve(message.result);
      else job.reject(deserializeError(message.error));
      armTimer(slot, index);
      pump();
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // keep the main thread alive
      failAll(slot, new Error(`worker crashed: ${event.message}`));
      worker.terminate();
      replace(index);
    };
    worker.postMessage({ kind: "init", init: options.init } satisfies ToWorker);
  };

  const pump = () => {
    slots.forEach((slot, index) => {
      while (!closed && queue.length > 0 && slot.running.size < maxInFlight) {
        const job = queue.shift()!;
        slot.running.set(job.id, job);
        slot.worker.postMessage(
          { kind: "task", id: job.id, request: job.request } satisfies ToWorker,
          job.transfer,
        );
      }
      armTimer(slot, index);
    });
  };

  for (let i = 0; i < size; i++) spawn(i);

  return {
    size,
    run(request, transfer = []) {
      if (broken) return Promise.reject(broken);
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
      let handle;
      try {
        handle = await handler!;
      } catch (error) {
        const serialized = serializeError(error);
        scope.postMessage({ kind: "error", id, error: { ...serialized, start: !serialized.hook } });
        return;
      }
      try {
        const { result, transfer } = await handle(request as Req);
        scope.postMessage({ kind: "result", id, result }, transfer ?? []);
      } catch (error) {
        scope.postMessage({ kind: "error", id, error: serializeError(error) });
      }
    });
  };
  // the module graph is loaded: a pool (or whoever started the worker early) may rely on that
  scope.postMessage({ kind: "ready" });
}
