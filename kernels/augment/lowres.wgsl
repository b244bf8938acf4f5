// Low-resolution simulation of one [D, H, W] sample, one axis per launch (three launches, out of place):
// the volume is sampled with nearest neighbour onto a smaller grid and back with Keys' cubic (a = −0.5);
// per axis and output index the host composes both into 4 taps (an index into the full axis, an f32
// weight) of core/data/resample.ts's tables, so o[dst + v] = Σ_j w_j · x[src + v + (i_j − v_axis)·stride].
// tb holds 8 words per output index of the axis, from word base.z: 4 indices, then 4 weight bits.
// Layout: one invocation per voxel; workgroup 256, grid split by linear_workgroup.
struct P { shape: vec4<u32>, base: vec4<u32> }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> tb: array<u32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

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
  let c = (g / stride) % size;
  let row = p.base.x + g - c * stride;
  let e = p.base.z + 8u * c;
  var acc = 0.0;
  for (var j = 0u; j < 4u; j++) { acc += bitcast<f32>(tb[e + 4u + j]) * x[row + tb[e + j] * stride]; }
  o[p.base.y + g] = acc;
}
