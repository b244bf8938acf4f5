// One axis of a separable Gaussian blur of one [D, H, W] sample, out of place: o[dst + v] =
// Σ_{j=−r..r} k_j · x[src + v + reflect_index(v_axis + j) − v_axis], k_j = exp(−j²/2σ²) / Σ exp(−i²/2σ²), with
// scipy's "reflect" border (−1 → 0, n → n − 1). The weights are computed per invocation (r ≤ a few
// dozen taps; σ = 0 is the caller's to skip). Layout: one invocation per voxel; workgroup 256, grid split
// by linear_workgroup.
struct P { shape: vec4<u32>, base: vec4<u32>, sigma: f32, radius: i32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

fn reflect_index(i: i32, n: i32) -> i32 {
  let period = 2 * n;
  var j = ((i % period) + period) % period;
  if (j >= n) { j = period - 1 - j; }
  return j;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linear_workgroup(wid, nwg) * 256u + lid;
  let n = p.shape.x * p.shape.y * p.shape.z;
  if (g >= n) { return; }
  // axis p.shape.w: its size and stride
  var size = p.shape.z;
  var stride = 1u;
  if (p.shape.w == 0u) { size = p.shape.x; stride = p.shape.y * p.shape.z; }
  if (p.shape.w == 1u) { size = p.shape.y; stride = p.shape.z; }
  let c = i32((g / stride) % size);
  let row = g - u32(c) * stride;
  let inv = -1.0 / (2.0 * p.sigma * p.sigma);
  var norm = 0.0;
  var acc = 0.0;
  for (var j = -p.radius; j <= p.radius; j++) {
    let k = exp(f32(j * j) * inv);
    norm += k;
    acc += k * x[p.base.x + row + u32(reflect_index(c + j, i32(size))) * stride];
  }
  o[p.base.y + g] = acc / norm;
}
