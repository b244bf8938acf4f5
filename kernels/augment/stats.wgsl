// Per-sample statistics for the intensity transforms, kept on the GPU (no readback): slot s of `work`
// holds 8 f32 [mean, std, min, max, -, -, -, -]; partial results of stage 1 live at work[part + 4·wg].
// Two passes of two stages: pass "moments" (mode 0) sums x and takes min and max; pass "spread" (mode 1)
// sums (x − mean)² with the mean of the first pass, giving the population std (as core/data/normalize's
// meanStd). Stage 1: `groups` workgroups of 256 stride over the n voxels at x[base..] and tree-reduce
// into one partial each; stage 2: one workgroup folds the ≤ 256 partials into the slot. f32 sums over a
// two-level tree: relative error about (n/(256·groups) + 16)·2^-24.
struct P { n: u32, base: u32, slot: u32, part: u32, groups: u32, mode: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> work: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

var<workgroup> acc: array<vec3<f32>, 256>;

fn fold(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  return vec3<f32>(a.x + b.x, min(a.y, b.y), max(a.z, b.z));
}

fn tree(lid: u32) {
  for (var span = 128u; span > 0u; span >>= 1u) {
    workgroupBarrier();
    if (lid < span) { acc[lid] = fold(acc[lid], acc[lid + span]); }
  }
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn stage1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let mean = work[p.slot * 8u];
  var a = vec3<f32>(0.0, 3.4e38, -3.4e38);
  for (var i = wid.x * 256u + lid; i < p.n; i += p.groups * 256u) {
    let v = x[p.base + i];
    if (p.mode == 0u) { a = fold(a, vec3<f32>(v, v, v)); } else { a.x += (v - mean) * (v - mean); }
  }
  acc[lid] = a;
  tree(lid);
  if (lid == 0u) {
    let at = p.part + 4u * wid.x;
    work[at] = acc[0].x;
    work[at + 1u] = acc[0].y;
    work[at + 2u] = acc[0].z;
  }
}

@compute @workgroup_size(256)
fn stage2(@builtin(local_invocation_index) lid: u32) {
  var a = vec3<f32>(0.0, 3.4e38, -3.4e38);
  if (lid < p.groups) {
    let at = p.part + 4u * lid;
    a = vec3<f32>(work[at], work[at + 1u], work[at + 2u]);
  }
  acc[lid] = a;
  tree(lid);
  if (lid == 0u) {
    let s = p.slot * 8u;
    if (p.mode == 0u) {
      work[s] = acc[0].x / f32(max(p.n, 1u));
      work[s + 2u] = acc[0].y;
      work[s + 3u] = acc[0].z;
    } else {
      work[s + 1u] = sqrt(acc[0].x / f32(max(p.n, 1u)));
    }
  }
}
