// Mirroring and quarter turns of one sample: o[dst + v] = x[src + flip(turn(v))] where turn(v) is the
// source of output voxel v under rot.z quarter turns in the plane of axes (rot.x, rot.y) with NumPy's
// np.rot90 convention (core/data/augment/rot90.ts), and flip reverses the axes whose bit is set in shape.w
// (1 = D, 2 = H, 4 = W) of a [D, H, W] volume: the CPU pipeline mirrors first, then turns. Odd turns need
// equal sizes on the two axes, so the shape never changes. Out of place (source and output must not overlap).
// Layout: one invocation per voxel (image, f32) or per output word of 4 voxels (mask, u8 packed 4 per
// u32; the output offset and D·H·W must be multiples of 4). Workgroup 256, grid split by linear_workgroup.
struct P { shape: vec4<u32>, base: vec4<u32>, rot: vec4<u32> }
@group(0) @binding(0) var<storage, read> x: array<{{STORE}}>;
@group(0) @binding(1) var<storage, read_write> o: array<{{STORE}}>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

fn source_index(g: u32) -> u32 {
  let n = vec3<u32>(p.shape.x, p.shape.y, p.shape.z);
  let v = vec3<u32>(g / (n.z * n.y), (g / n.z) % n.y, g % n.z);
  var s = v;
  let a = p.rot.x;
  let b = p.rot.y;
  if (p.rot.z == 1u) {
    s[a] = v[b];
    s[b] = n[b] - 1u - v[a];
  } else if (p.rot.z == 2u) {
    s[a] = n[a] - 1u - v[a];
    s[b] = n[b] - 1u - v[b];
  } else if (p.rot.z == 3u) {
    s[a] = n[a] - 1u - v[b];
    s[b] = v[a];
  }
  if ((p.shape.w & 1u) != 0u) { s.x = n.x - 1u - s.x; }
  if ((p.shape.w & 2u) != 0u) { s.y = n.y - 1u - s.y; }
  if ((p.shape.w & 4u) != 0u) { s.z = n.z - 1u - s.z; }
  return p.base.x + (s.x * n.y + s.y) * n.z + s.z;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  let n = p.shape.x * p.shape.y * p.shape.z;
  {{MAIN}}
}
