// Spatial augmentation of one sample: rotation, scaling and crop as one resampling. Output voxel v of a
// [pd, ph, pw] patch reads the source [D, H, W] at s = M·(v − half) + c (M = rows m0..m2 .xyz, c = their
// .w), interpolated by {{INTERP}}: "nearest" (⌊s + ½⌋), "linear" (2 taps per axis) or "cubic" (Keys'
// cubic convolution, a = −0.5, 4 taps per axis: ⌊s⌋ − 1 … ⌊s⌋ + 2; no prefilter), with {{PADDING}}
// "zero" (reads outside are 0) or "border" (indices clamp to the edge).
// Layout: one invocation per output voxel (image, f32) or per output word of 4 voxels (mask, u8 packed 4
// per u32, little-endian); the source and the output start at element offsets src.w and dst.w of their
// bindings (a batch shares one output tensor; a mask batch needs pd·ph·pw and dst.w multiples of 4).
// Workgroup 256, grid split by linear_workgroup. f32 arithmetic; coordinates are exact in f32 only up to
// 2^24, far above any volume.
struct P { m0: vec4<f32>, m1: vec4<f32>, m2: vec4<f32>, offset: vec4<f32>, src: vec4<u32>, dst: vec4<u32> }
@group(0) @binding(0) var<storage, read> x: array<{{STORE}}>;
@group(0) @binding(1) var<storage, read_write> o: array<{{STORE}}>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

fn inside(i: vec3<i32>) -> bool {
  return all(i >= vec3<i32>(0)) && all(i < vec3<i32>(p.src.xyz));
}

fn load_src(i: vec3<i32>) -> f32 {
  let n = vec3<i32>(p.src.xyz);
  {{FETCH_PAD}}
  let e = p.src.w + (u32(j.x) * p.src.y + u32(j.y)) * p.src.z + u32(j.z);
  {{FETCH_LOAD}}
}

// Keys a = −0.5 weights of the taps at offsets −1, 0, 1, 2 for fraction t in [0, 1)
fn cubic_weights(t: f32) -> vec4<f32> {
  let t2 = t * t;
  let t3 = t2 * t;
  return vec4<f32>(
    -0.5 * t3 + t2 - 0.5 * t,
    1.5 * t3 - 2.5 * t2 + 1.0,
    -1.5 * t3 + 2.0 * t2 + 0.5 * t,
    0.5 * t3 - 0.5 * t2,
  );
}

fn sample_at(s: vec3<f32>) -> f32 {
  {{SAMPLE}}
}

fn source_of(g: u32) -> vec3<f32> {
  let w = g % p.dst.z;
  let h = (g / p.dst.z) % p.dst.y;
  let d = g / (p.dst.z * p.dst.y);
  let v = vec3<f32>(f32(d), f32(h), f32(w)) - p.offset.xyz;
  return vec3<f32>(dot(p.m0.xyz, v) + p.m0.w, dot(p.m1.xyz, v) + p.m1.w, dot(p.m2.xyz, v) + p.m2.w);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  {{MAIN}}
}
