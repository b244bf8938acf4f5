#!/usr/bin/env bash
# Installs everything voxssl needs on a fresh Debian/Ubuntu machine with Node.js:
#   1. the pinned Deno binary (tools/package-lock.json) into tools/node_modules,
#   2. the project's npm dependencies into Deno's cache (deno.lock, frozen),
#   3. a WebGPU adapter: when Deno finds none and we may use apt, Mesa's lavapipe (CPU Vulkan),
#   4. MPICH (multi-process training), when missing and we may use apt,
#   5. Debian's chromium for the report pages' browser tests, when missing and we may use apt.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*" >&2; }

if ! ./deno --version >/dev/null 2>&1; then
  command -v npm >/dev/null || { say "npm not found: install Node.js (https://nodejs.org) first"; exit 1; }
  say "installing Deno $(sed -n 's/.*"deno": "\(.*\)".*/\1/p' tools/package.json) from npm into tools/node_modules"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error >&2
fi
./deno --version | head -n 1 >&2

say "caching npm dependencies (deno.lock)"
./deno install --frozen --quiet --entrypoint mod.ts cli/main.ts bench/main.ts >&2

if ! ./deno run --allow-env --allow-read scripts/probe_adapter.ts; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "no WebGPU adapter: installing Mesa's lavapipe (mesa-vulkan-drivers), a CPU Vulkan driver"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq mesa-vulkan-drivers >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq mesa-vulkan-drivers >/dev/null; }
    ./deno run --allow-env --allow-read scripts/probe_adapter.ts || {
      say "still no WebGPU adapter after installing lavapipe; see the message above"
      exit 1
    }
  else
    say "no WebGPU adapter. Install a GPU driver with Vulkan support, or Mesa's lavapipe:"
    say "  sudo apt-get install mesa-vulkan-drivers   (then run this script again)"
    exit 1
  fi
fi

# 4. MPI for multi-process training (docs/distributed.md) and its 2-rank tests: MPICH, when missing.
have_mpich() {
  for lib in /usr/lib/*/libmpich.so.12 /usr/lib64/libmpich.so.12 /usr/lib/libmpich.so.12; do
    [ -e "$lib" ] && return 0
  done
  return 1
}
if ! command -v mpiexec >/dev/null || ! have_mpich; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing MPICH (mpich, libmpich-dev) for multi-process training"
    export DEBIAN_FRONTEND=noninteractive
    # optional: without it voxssl runs single-process and the 2-rank tests are ignored
    apt-get install -y -qq mpich libmpich-dev >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq mpich libmpich-dev >/dev/null 2>&1; } ||
      say "could not install MPICH: multi-process training and its tests are unavailable"
  else
    say "optional: multi-process training needs MPICH: sudo apt-get install mpich libmpich-dev"
  fi
fi
# 5. chromium for the report pages' browser tests.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium (headless browser for the report page tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } ||
      say "could not install chromium: the browser tests will be ignored"
  else
    say "no chromium: the report pages' browser tests will be ignored (sudo apt-get install chromium)"
  fi
fi
