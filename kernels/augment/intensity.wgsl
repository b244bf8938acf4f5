// Pointwise intensity transforms of one sample, in place on x[base .. base + n), with statistics read
// from slots of `work` (see stats.wgsl: [mean, std, min, max] at 8·slot). op:
//   0 brightness    x ← x·f
//   1 contrast      x ← clamp((x − mean)·f + mean, min, max)                      (stats of x in slot a)
//   2 gamma (pow)   y = s·x; y ← ((y − lo)/r)^g · r + lo, lo = min of s·x, r = range + 1e−7
//                   (stats of x in slot a; s = ±1: −1 is the inverted gamma; stores y)
//   3 gamma (stats) x ← s·((y − mean_y)·std'/(std_y + 1e−8) + mean')   (' of s·x from slot a, _y slot b)
// as core/data/augment/intensity.ts. Layout: one invocation per voxel; workgroup 256, grid split by
// linear_workgroup.
struct P { n: u32, base: u32, op: u32, slot_a: u32, slot_b: u32, f: f32, g: f32, s: f32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> work: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  if (t >= p.n) { return; }
  let i = p.base + t;
  let a = p.slot_a * 8u;
  let v = x[i];
  if (p.op == 0u) {
    x[i] = v * p.f;
  } else if (p.op == 1u) {
    let m = work[a];
    x[i] = min(work[a + 3u], max(work[a + 2u], (v - m) * p.f + m));
  } else if (p.op == 2u) {
    // min of s·x: min(x) for s = 1, −max(x) for s = −1
    let lo = select(-work[a + 3u], work[a + 2u], p.s > 0.0);
    let r = work[a + 3u] - work[a + 2u] + 1e-7;
    let u = (p.s * v - lo) / r;
    x[i] = select(pow(u, p.g), 0.0, u <= 0.0) * r + lo;
  } else {
    let b = p.slot_b * 8u;
    let k = work[a + 1u] / (work[b + 1u] + 1e-8);
    x[i] = p.s * ((v - work[b]) * k + p.s * work[a]);
  }
}
