/**
 * MPI through Deno FFI, for the MPICH ABI (MPICH, and the MPIs built on it: Intel MPI, Cray MPICH,
 * MVAPICH). In that ABI every handle (communicator, datatype, op, request) is a C `int`, so the
 * constants below are plain numbers, copied from MPICH 4.0's mpi.h (the ABI is stable since MPICH 3.1).
 * Open MPI's handles are pointers to library globals, so it is not supported; its `libmpi.so.40` is not
 * among the names {@link openMpi} tries, and launch.ts names the mismatch when Open MPI's `mpirun`
 * starts the job.
 *
 * Only what data-parallel training needs is bound: init/finalize, rank/size, blocking and non-blocking
 * allreduce, allgather, broadcast, barrier, abort. Blocking calls take typed arrays directly; a
 * non-blocking one keeps its buffer referenced in the {@link MpiRequest} until it completes (the
 * backing store of an ArrayBuffer does not move, so its address stays valid).
 *
 * @module
 */

/** MPICH ABI constants (mpi.h of MPICH 4.0). */
export const MPICH = {
  COMM_WORLD: 0x44000000,
  BYTE: 0x4c00010d,
  INT: 0x4c000405,
  FLOAT: 0x4c00040a,
  DOUBLE: 0x4c00080b,
  UINT16: 0x4c00023c,
  FLOAT16: 0x4c000246, // MPIX_C_FLOAT16
  MAX: 0x58000001,
  MIN: 0x58000002,
  SUM: 0x58000003,
  REQUEST_NULL: 0x2c000000,
  STATUS_IGNORE: 1n, // (MPI_Status *)1
  IN_PLACE: -1n, // (void *)-1
  THREAD_SINGLE: 0,
  SUCCESS: 0,
  MAX_ERROR_STRING: 512,
  MAX_LIBRARY_VERSION_STRING: 8192,
} as const;

/** Where the MPI library is looked for, in order (`VOXSSL_MPI_LIBRARY` first when set). */
export const MPI_LIBRARY_CANDIDATES = ["libmpi.so.12", "libmpich.so.12", "libmpi.so", "libmpich.so"];

const SYMBOLS = {
  MPI_Initialized: { parameters: ["buffer"], result: "i32" },
  MPI_Finalized: { parameters: ["buffer"], result: "i32" },
  MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  MPI_Finalize: { parameters: [], result: "i32" },
  MPI_Comm_rank: { parameters: ["i32", "buffer"], result: "i32" },
  MPI_Comm_size: { parameters: ["i32", "buffer"], result: "i32" },
  MPI_Allreduce: {
    parameters: ["pointer", "pointer", "i32", "i32", "i32", "i32"],
    result: "i32",
  },
  MPI_Iallreduce: {
    parameters: ["pointer", "pointer", "i32", "i32", "i32", "i32", "buffer"],
    result: "i32",
  },
  MPI_Allgather: {
    parameters: ["pointer", "i32", "i32", "pointer", "i32", "i32", "i32"],
    result: "i32",
  },
  MPI_Bcast: { parameters: ["pointer", "i32", "i32", "i32", "i32"], result: "i32" },
  MPI_Barrier: { parameters: ["i32"], result: "i32" },
  MPI_Wait: { parameters: ["buffer", "pointer"], result: "i32" },
  MPI_Test: { parameters: ["buffer", "buffer", "pointer"], result: "i32" },
  MPI_Abort: { parameters: ["i32", "i32"], result: "i32" },
  MPI_Error_string: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** A typed array MPI reads or writes. */
export type MpiBuffer = Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;

/** The MPI datatype of a typed array (`Uint16Array` carries f16 bits: see {@link MPICH}.FLOAT16). */
function datatypeOf(buffer: MpiBuffer, f16 = false): number {
  if (buffer instanceof Float32Array) return MPICH.FLOAT;
  if (buffer instanceof Float64Array) return MPICH.DOUBLE;
  if (buffer instanceof Int32Array) return MPICH.INT;
  if (buffer instanceof Uint16Array) return f16 ? MPICH.FLOAT16 : MPICH.UINT16;
  return MPICH.BYTE;
}

/** Reduction operations. */
export type MpiOp = "sum" | "max" | "min";
const OPS: Record<MpiOp, number> = { sum: MPICH.SUM, max: MPICH.MAX, min: MPICH.MIN };

/** An MPI call failed: the function and MPI's own message. */
export class MpiError extends Error {
  /** A failed call `fn` with MPI error code `code`. */
  constructor(message: string, readonly code?: number) {
    super(message);
    this.name = "MpiError";
  }
}

const ptr = (buffer: MpiBuffer) => Deno.UnsafePointer.of(buffer as Uint8Array<ArrayBuffer>);

/** A started non-blocking operation; its buffers stay referenced until it completes. */
export class MpiRequest {
  readonly #mpi: Mpi;
  readonly #handle = new Int32Array(1);
  #done = false;
  /** The buffers MPI is still using (kept alive here). */
  readonly buffers: MpiBuffer[];

  /** Wraps the handle MPI wrote into `handle`. */
  constructor(mpi: Mpi, handle: Int32Array, buffers: MpiBuffer[]) {
    this.#mpi = mpi;
    this.#handle.set(handle);
    this.buffers = buffers;
  }

  /** Whether it has completed (advances MPI's progress engine; never blocks). */
  test(): boolean {
    if (this.#done) return true;
    this.#done = this.#mpi.testRequest(this.#handle);
    return this.#done;
  }

  /** Blocks until it has completed. */
  wait(): void {
    if (this.#done) return;
    this.#mpi.waitRequest(this.#handle);
    this.#done = true;
  }

  /**
   * Resolves when it has completed: drives `test()` for `sliceMs` of each turn of the event loop, then
   * yields, so that GPU readbacks and other promises progress meanwhile (MPICH advances a request only
   * inside MPI calls, one step of its schedule per call).
   */
  async done(sliceMs = 0.5): Promise<void> {
    while (true) {
      const until = performance.now() + sliceMs;
      do {
        if (this.test()) return;
      } while (performance.now() < until);
      await new Promise((r) => setTimeout(r, 0));
    }
  }
}

const statusIgnore = () => Deno.UnsafePointer.create(MPICH.STATUS_IGNORE);

/** An initialised MPI library: this process's rank in `MPI_COMM_WORLD` and the collectives. */
export class Mpi {
  readonly #lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  /** This process's rank. */
  readonly rank: number;
  /** Number of processes. */
  readonly size: number;
  /** The library that was loaded (path or soname). */
  readonly library: string;
  #finalized = false;

  /** Initialises MPI from an opened library (see {@link openMpi}). */
  constructor(lib: Deno.DynamicLibrary<typeof SYMBOLS>, library: string) {
    this.#lib = lib;
    this.library = library;
    const flag = new Int32Array(1);
    this.check("MPI_Initialized", this.#lib.symbols.MPI_Initialized(flag));
    if (!flag[0]) {
      const provided = new Int32Array(1);
      const code = this.#lib.symbols.MPI_Init_thread(null, null, MPICH.THREAD_SINGLE, provided);
      if (code !== MPICH.SUCCESS) {
        throw new MpiError(`MPI_Init_thread failed (${this.errorString(code)})`, code);
      }
    }
    const out = new Int32Array(1);
    this.check("MPI_Comm_rank", this.#lib.symbols.MPI_Comm_rank(MPICH.COMM_WORLD, out));
    this.rank = out[0];
    this.check("MPI_Comm_size", this.#lib.symbols.MPI_Comm_size(MPICH.COMM_WORLD, out));
    this.size = out[0];
  }

  /** `MPI_Test` on a request handle: whether it has completed (then MPI frees the handle). */
  testRequest(handle: Int32Array): boolean {
    const flag = new Int32Array(1);
    this.check("MPI_Test", this.#lib.symbols.MPI_Test(handle, flag, statusIgnore()));
    return flag[0] !== 0;
  }

  /** `MPI_Wait` on a request handle: blocks until it has completed. */
  waitRequest(handle: Int32Array): void {
    this.check("MPI_Wait", this.#lib.symbols.MPI_Wait(handle, statusIgnore()));
  }

  /** Throws an {@link MpiError} naming `fn` unless `code` is MPI_SUCCESS. */
  check(fn: string, code: number): void {
    if (code !== MPICH.SUCCESS) throw new MpiError(`${fn} failed: ${this.errorString(code)}`, code);
  }

  /** MPI's text for an error code. */
  errorString(code: number): string {
    const text = new Uint8Array(MPICH.MAX_ERROR_STRING);
    const length = new Int32Array(1);
    if (this.#lib.symbols.MPI_Error_string(code, text, length) !== MPICH.SUCCESS) return `error ${code}`;
    return new TextDecoder().decode(text.subarray(0, length[0]));
  }

  /** The library's version string (`MPI_Get_library_version`). */
  libraryVersion(): string {
    const text = new Uint8Array(MPICH.MAX_LIBRARY_VERSION_STRING);
    const length = new Int32Array(1);
    this.check("MPI_Get_library_version", this.#lib.symbols.MPI_Get_library_version(text, length));
    return new TextDecoder().decode(text.subarray(0, length[0])).split("\n")[0].trim();
  }

  /** In-place allreduce of `buffer` over all ranks (blocking). */
  allreduce(buffer: MpiBuffer, op: MpiOp = "sum", options: { f16?: boolean } = {}): void {
    const type = datatypeOf(buffer, options.f16);
    const inPlace = Deno.UnsafePointer.create(MPICH.IN_PLACE);
    this.check(
      "MPI_Allreduce",
      this.#lib.symbols.MPI_Allreduce(inPlace, ptr(buffer), buffer.length, type, OPS[op], MPICH.COMM_WORLD),
    );
  }

  /** Starts an in-place allreduce of `buffer`; `buffer` must not be touched until the request completes. */
  iallreduce(buffer: MpiBuffer, op: MpiOp = "sum", options: { f16?: boolean } = {}): MpiRequest {
    const type = datatypeOf(buffer, options.f16);
    const handle = new Int32Array(1);
    const inPlace = Deno.UnsafePointer.create(MPICH.IN_PLACE);
    this.check(
      "MPI_Iallreduce",
      this.#lib.symbols.MPI_Iallreduce(
        inPlace,
        ptr(buffer),
        buffer.length,
        type,
        OPS[op],
        MPICH.COMM_WORLD,
        handle,
      ),
    );
    return new MpiRequest(this, handle, [buffer]);
  }

  /** Every rank's `local` (all the same length), concatenated in rank order. */
  allgather<T extends MpiBuffer>(local: T): T {
    const Ctor = local.constructor as { new (n: number): T };
    const out = new Ctor(local.length * this.size);
    const type = datatypeOf(local);
    this.check(
      "MPI_Allgather",
      this.#lib.symbols.MPI_Allgather(
        ptr(local),
        local.length,
        type,
        ptr(out),
        local.length,
        type,
        MPICH.COMM_WORLD,
      ),
    );
    return out;
  }

  /** Overwrites `buffer` on every rank with `root`'s. */
  broadcast(buffer: MpiBuffer, root = 0): void {
    this.check(
      "MPI_Bcast",
      this.#lib.symbols.MPI_Bcast(ptr(buffer), buffer.length, datatypeOf(buffer), root, MPICH.COMM_WORLD),
    );
  }

  /** Waits for every rank. */
  barrier(): void {
    this.check("MPI_Barrier", this.#lib.symbols.MPI_Barrier(MPICH.COMM_WORLD));
  }

  /** Ends the whole job (every rank) with `code`: for a rank that cannot continue. */
  abort(code: number): never {
    this.#lib.symbols.MPI_Abort(MPICH.COMM_WORLD, code);
    Deno.exit(code);
  }

  /** Finalises MPI (once; later calls do nothing) and closes the library. */
  finalize(): void {
    if (this.#finalized) return;
    this.#finalized = true;
    const flag = new Int32Array(1);
    this.#lib.symbols.MPI_Finalized(flag);
    if (!flag[0]) this.check("MPI_Finalize", this.#lib.symbols.MPI_Finalize());
  }
}

/** Loads the MPI library (the first of `candidates` that opens) and initialises it. */
export function openMpi(candidates: readonly string[] = defaultCandidates()): Mpi {
  const failures: string[] = [];
  for (const name of candidates) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(name, SYMBOLS);
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message.split("\n")[0]}`);
      continue;
    }
    return new Mpi(lib, name);
  }
  throw new MpiError(
    "cannot load an MPI library with the MPICH ABI (MPICH, Intel MPI, Cray MPICH, MVAPICH). Install one " +
      "(Debian/Ubuntu: apt-get install mpich) or point VOXSSL_MPI_LIBRARY at its libmpi.so. Tried:\n  " +
      failures.join("\n  "),
  );
}

function defaultCandidates(): string[] {
  const explicit = Deno.env.get("VOXSSL_MPI_LIBRARY");
  return explicit ? [explicit] : MPI_LIBRARY_CANDIDATES;
}
