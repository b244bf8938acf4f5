// Low-resolution simulation of one [D, H, W] sample, out of place, as one gather: the volume is sampled
// with nearest neighbour onto a smaller grid and back with Keys' cubic (a = −0.5) to [D, H, W]; both
// steps are separable, so per axis and output index the host composes them into 4 taps (source index
// into the full grid, f32 weight) of core/data/resample.ts's tables. o[dst + v] = Σ_abc wd_a·wh_b·ww_c ·
// x[src + (id_a·H + ih_b)·W + iw_c]. tb: per axis (D, then H, then W) and output index, 8 words: 4
// indices, 4 weight bits. Layout: one invocation per voxel; workgroup 256, grid split by linear_workgroup.
struct P { shape: vec4<u32>, base: vec4<u32> }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> tb: array<u32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

fn weights(e: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<f32>(tb[e + 4u]), bitcast<f32>(tb[e + 5u]), bitcast<f32>(tb[e + 6u]),
    bitcast<f32>(tb[e + 7u]));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linear_workgroup(wid, nwg) * 256u + lid;
  let n = p.shape.x * p.shape.y * p.shape.z;
  if (g >= n) { return; }
  let w = g % p.shape.z;
  let h = (g / p.shape.z) % p.shape.y;
  let d = g / (p.shape.z * p.shape.y);
  let ed = p.base.z + 8u * d;
  let eh = p.base.z + 8u * (p.shape.x + h);
  let ew = p.base.z + 8u * (p.shape.x + p.shape.y + w);
  let wd = weights(ed);
  let wh = weights(eh);
  let ww = weights(ew);
  var acc = 0.0;
  for (var a = 0u; a < 4u; a++) {
    var acc_h = 0.0;
    for (var b = 0u; b < 4u; b++) {
      let row = p.base.x + (tb[ed + a] * p.shape.y + tb[eh + b]) * p.shape.z;
      var acc_w = 0.0;
      for (var c = 0u; c < 4u; c++) { acc_w += ww[c] * x[row + tb[ew + c]]; }
      acc_h += wh[b] * acc_w;
    }
    acc += wd[a] * acc_h;
  }
  o[p.base.y + g] = acc;
}
