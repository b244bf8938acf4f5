// Mirroring of one sample: o[dst + v] = x[src + flip(v)] where flip reverses the axes whose bit is set in
// shape.w (1 = D, 2 = H, 4 = W) of a [D, H, W] volume. Out of place (source and output must not overlap).
// Layout: one invocation per voxel (image, f32) or per output word of 4 voxels (mask, u8 packed 4 per
// u32; the output offset and D·H·W must be multiples of 4). Workgroup 256, grid split by linear_workgroup.
struct P { shape: vec4<u32>, base: vec4<u32> }
@group(0) @binding(0) var<storage, read> x: array<{{STORE}}>;
@group(0) @binding(1) var<storage, read_write> o: array<{{STORE}}>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

fn source_index(g: u32) -> u32 {
  var w = g % p.shape.z;
  var h = (g / p.shape.z) % p.shape.y;
  var d = g / (p.shape.z * p.shape.y);
  if ((p.shape.w & 1u) != 0u) { d = p.shape.x - 1u - d; }
  if ((p.shape.w & 2u) != 0u) { h = p.shape.y - 1u - h; }
  if ((p.shape.w & 4u) != 0u) { w = p.shape.z - 1u - w; }
  return p.base.x + (d * p.shape.y + h) * p.shape.z + w;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  let n = p.shape.x * p.shape.y * p.shape.z;
  {{MAIN}}
}
