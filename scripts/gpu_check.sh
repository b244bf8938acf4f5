#!/usr/bin/env bash
# The one-shot GPU check (scripts/gpu_check.ts; docs/profiling.md): doctor, a correctness subset of the
# tests, every bench suite at the GPU preset and the OpenMind recipe end to end (ResEnc-L and Primus-M,
# MAE, 160³, batch 2, mixed: steps/s, peak memory, profiler table), in at most 8 minutes, into one JSON.
#   On a GPU machine (../shared/device/README.md):  bash .device/gpu-run.sh bash scripts/gpu_check.sh --out "$OUT/gpu_check.json"
#   Scaled down, on lavapipe:                       bash scripts/gpu_check.sh --small   (or VOXSSL_GPU_CHECK_SMALL=1)
set -uo pipefail
cd "$(dirname "$0")/.."
extra=()
if [ -n "${DENO_DIR:-}" ] && [ "${DENO_DIR#*.device}" != "$DENO_DIR" ]; then
  extra+=(--cached-only) # gpu-run.sh's carried DENO_DIR: the GPU machine has no registry
fi
if command -v deno >/dev/null 2>&1; then deno=deno; else deno=./deno; fi
exec "$deno" run --allow-all ${extra[@]+"${extra[@]}"} scripts/gpu_check.ts ${extra[@]+"${extra[@]}"} "$@"
