/**
 * Launcher for philox.wgsl (seeded counter-based random numbers) and the transforms it supports.
 * Each launch consumes ⌈n/4⌉ counters starting at `offset`; the caller advances its offset. An output above
 * `maxStorageBufferBindingSize` is written in windows of whole counter blocks (4 elements) from the launch
 * planner, each starting at its own counter, so the values are the same bits however it is split.
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import core from "./philox_core.wgsl" with { type: "text" };
import source from "./philox.wgsl" with { type: "text" };
import { planWindows } from "./launch_plan.ts";
import { ELEMENT_BYTES, LINEAR_INDEX, specialize } from "./wgsl.ts";

/** WGSL of Philox4x32-10: `philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32>` and `unit(u32) -> f32`. */
export const PHILOX_WGSL: string = core;

/** Distributions: uniform in [a, b), normal with mean a and std b, bernoulli with p = a. */
export type RandomKind = "uniform" | "normal" | "bernoulli";

const TRANSFORMS: Record<RandomKind, string> = {
  uniform: `return vec4<f32>(p.a) + (p.b - p.a) * vec4<f32>(unit(r.x), unit(r.y), unit(r.z), unit(r.w));`,
  // Box–Muller: u1 in (0, 1] so log(u1) is finite
  normal: `let u1 = (f32(r.x >> 8u) + 1.0) * (1.0 / 16777216.0);
  let u2 = unit(r.y);
  let u3 = (f32(r.z >> 8u) + 1.0) * (1.0 / 16777216.0);
  let u4 = unit(r.w);
  let r1 = sqrt(-2.0 * log(u1));
  let r2 = sqrt(-2.0 * log(u3));
  let tau = 6.283185307179586;
  let z = vec4<f32>(r1 * cos(tau * u2), r1 * sin(tau * u2), r2 * cos(tau * u4), r2 * sin(tau * u4));
  return vec4<f32>(p.a) + p.b * z;`,
  bernoulli: `return select(vec4<f32>(0.0), vec4<f32>(1.0),
    vec4<f32>(unit(r.x), unit(r.y), unit(r.z), unit(r.w)) < vec4<f32>(p.a));`,
};

/** Records `n` random values of `kind` into `out` (f32, f16 or u32 for bernoulli masks). */
export function runRandom(
  gpu: Gpu,
  kind: RandomKind,
  type: "f32" | "f16" | "u32",
  out: BufferRange,
  n: number,
  seed: number,
  offset: number,
  a: number,
  b: number,
): void {
  if (n === 0) return;
  const kernel = gpu.kernel(`philox:${kind}:${type}`, () => ({
    name: `philox_${kind}[${type}]`,
    code: specialize(source, { T: type, TRANSFORM: TRANSFORMS[kind], LINEAR_INDEX, PHILOX_CORE: core }),
    storage: ["read_write"],
    uniform: true,
  }));
  const operand = { range: out, elementBytes: ELEMENT_BYTES[type], itemStride: 1, itemExtent: 1 };
  for (const w of planWindows(gpu.limits, [operand], n, { granule: 4, label: `philox_${kind}` })) {
    const at = offset + w.item0 / 4; // every window but the last holds whole blocks of 4
    const params = new Params().u32(w.items).u32(at % 2 ** 32).u32(Math.floor(at / 2 ** 32))
      .u32(seed % 2 ** 32).u32(Math.floor(seed / 2 ** 32) % 2 ** 32).f32(a).f32(b).u32(w.bases[0]);
    gpu.dispatch(kernel, w.ranges, params, Math.ceil(Math.ceil(w.items / 4) / 256));
  }
}
