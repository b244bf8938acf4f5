// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11), the generator of cuRAND/PyTorch.
// Layout: invocation t draws one block from counter (offset + t) under key (seed_lo, seed_hi) and writes
// elements 4t..4t+3 of a contiguous output of n elements. Integer arithmetic only until the final
// conversion, so every adapter produces the same bits; mulhi is built from 16-bit halves (WGSL has no
// u64). Conversions: uniform u = (x >> 8) · 2^-24 in [0, 1); normal by Box–Muller on pairs; bernoulli
// as u < p. Workgroup 256; grid split over x/y/z by linear_workgroup. Limits: an output above one binding is
// written window by window (the launch planner, philox.ts): `base` is the window's first element in its binding.
struct P { n: u32, offset_lo: u32, offset_hi: u32, seed_lo: u32, seed_hi: u32, a: f32, b: f32, base: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

{{PHILOX_CORE}}

fn transform(r: vec4<u32>) -> vec4<f32> {
  {{TRANSFORM}}
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  if (t * 4u >= p.n) { return; }
  let lo = p.offset_lo + t;
  let hi = p.offset_hi + select(0u, 1u, lo < t); // carry
  let v = transform(philox(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(p.seed_lo, p.seed_hi)));
  for (var j = 0u; j < 4u; j++) {
    if (t * 4u + j < p.n) { out[p.base + t * 4u + j] = {{T}}(v[j]); }
  }
}
