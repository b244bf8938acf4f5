import {
  agreeOnStop,
  averageOverRanks,
  initDistributed,
  launchInfo,
  type Mpi,
  MpiError,
  openMpi,
  shareOfBatch,
  SINGLE_PROCESS,
} from "../../../mod.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";

const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
const neverOpen = (): Mpi => {
  throw new Error("MPI must not be loaded here");
};

Deno.test("launchInfo() reads MPICH, Open MPI, PMIx and srun-step variables, and nothing else", () => {
  assertEquals(launchInfo(envOf({})), undefined);
  assertEquals(
    launchInfo(envOf({ PMI_RANK: "1", PMI_SIZE: "4", MPI_LOCALRANKID: "1", MPI_LOCALNRANKS: "2" })),
    { launcher: "mpich", rank: 1, size: 4, localRank: 1, localSize: 2 },
  );
  assertEquals(
    launchInfo(envOf({ OMPI_COMM_WORLD_RANK: "0", OMPI_COMM_WORLD_SIZE: "2" }))?.launcher,
    "openmpi",
  );
  assertEquals(launchInfo(envOf({ PMIX_RANK: "3", PMIX_SIZE: "8" }))?.rank, 3);
  // an sbatch script has SLURM_NTASKS but is no parallel job; an srun step is
  assertEquals(launchInfo(envOf({ SLURM_PROCID: "0", SLURM_NTASKS: "4" })), undefined);
  assertEquals(
    launchInfo(
      envOf({ SLURM_STEP_ID: "0", SLURM_PROCID: "2", SLURM_STEP_NUM_TASKS: "4", SLURM_LOCALID: "0" }),
    ),
    { launcher: "slurm", rank: 2, size: 4, localRank: 0 },
  );
  assertEquals(launchInfo(envOf({ PMI_RANK: "x", PMI_SIZE: "2" })), undefined);
});

Deno.test("initDistributed(): a plain run and a job of one never load MPI", () => {
  assertEquals(initDistributed({ env: envOf({}), open: neverOpen }), SINGLE_PROCESS);
  assertEquals(
    initDistributed({ env: envOf({ PMI_RANK: "0", PMI_SIZE: "1" }), open: neverOpen }),
    SINGLE_PROCESS,
  );
});

Deno.test("initDistributed(): a lost PMI connection is named before MPI would abort the process", () => {
  for (
    const [vars, expected] of [
      [{}, "PMI_FD and PMI_PORT are not set"],
      [{ PMI_FD: "7" }, "PMI_FD=7 is not an open file descriptor"],
    ] as const
  ) {
    const error = assertThrows(
      () =>
        initDistributed({
          env: envOf({ PMI_RANK: "1", PMI_SIZE: "2", ...vars }),
          open: neverOpen,
          fdIsOpen: () => false,
        }),
      MpiError,
    );
    assert(error.message.includes(expected) && error.message.includes("npx deno"), error.message);
  }
});

Deno.test("initDistributed(): a missing library or a mismatched launcher is a clear error", () => {
  const twoRanks = envOf({ PMI_RANK: "1", PMI_SIZE: "2", PMI_FD: "7" });
  const missing = assertThrows(
    () =>
      initDistributed({
        env: twoRanks,
        open: () => openMpi(["libvoxssl-no-such-mpi.so"]),
        fdIsOpen: () => true,
      }),
    MpiError,
  );
  assert(missing.message.includes("rank 1 of 2"), missing.message);
  assert(missing.message.includes("apt-get install mpich"), missing.message);
  assert(missing.message.includes("libvoxssl-no-such-mpi.so"), missing.message);
  // Open MPI's mpirun starting MPICH-linked processes: each is a singleton
  let finalized = false;
  const singleton = () =>
    ({ rank: 0, size: 1, library: "libmpich.so.12", finalize: () => finalized = true }) as unknown as Mpi;
  const mismatch = assertThrows(
    () =>
      initDistributed({
        env: envOf({ OMPI_COMM_WORLD_RANK: "1", OMPI_COMM_WORLD_SIZE: "2" }),
        open: singleton,
      }),
    MpiError,
  );
  assert(mismatch.message.includes("rank 0 of 1") && mismatch.message.includes("Open MPI"), mismatch.message);
  assert(finalized, "MPI finalised before the error");
});

Deno.test("shareOfBatch() splits the global batch evenly and names a batch that does not split", () => {
  assertEquals(shareOfBatch(8, { rank: 0, size: 4 }), { batch: 2, firstSample: 0 });
  assertEquals(shareOfBatch(8, { rank: 3, size: 4 }), { batch: 2, firstSample: 6 });
  const error = assertThrows(() => shareOfBatch(6, { rank: 0, size: 4 }), RangeError);
  assert(error.message.includes("batch 6") && error.message.includes("4 processes"), error.message);
});

Deno.test("a single process decides alone: stop requests and metrics pass through", () => {
  assertEquals(agreeOnStop(undefined, "SIGUSR1"), "SIGUSR1");
  assertEquals(agreeOnStop(undefined, undefined), undefined);
  assertEquals(averageOverRanks(undefined, { loss: 0.25 }), { loss: 0.25 });
});
