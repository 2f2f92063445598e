/**
 * The optimizer step as WGSL: F's keep bits drawn per chunk with the CPU path's xoshiro128** streams, and one
 * fused pass per tensor that clips, transforms (a pull towards the pretrained weights, a keep mask), updates Adam's
 * moments and the weights, and applies the decoupled decay, as updateSegment does element by element on the CPU
 * (there in float64 rounded to float32 on store, here in float32).
 */

/**
 * F's draws: one invocation per chunk, its stream's state from the host (seedState of streamSeed(seed, step,
 * tensor, chunk)); element k of the chunk is the low (k even) or high (k odd) half of draw k / 2, kept when below
 * the threshold, as Rng.bernoulliBits. Chunks start on whole 32-bit words, so each invocation writes its own words.
 */
export const DRAW_WGSL = /* wgsl */ `
struct Draw { chunks: u32, chunk: u32, n: u32, threshold: u32 }
@group(0) @binding(0) var<uniform> u: Draw;
@group(0) @binding(1) var<storage, read> seeds: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= u.chunks) { return; }
  var s = seeds[c];
  let start = c * u.chunk;
  let end = min(u.n, start + u.chunk);
  var word = 0u;
  for (var j = start; j < end; j += 2u) {
    let x = s.y * 5u;
    let r = ((x << 7u) | (x >> 25u)) * 9u;
    let t = s.y << 9u;
    s.z ^= s.x;
    s.w ^= s.y;
    s.y ^= s.z;
    s.x ^= s.w;
    s.z ^= t;
    s.w = (s.w << 11u) | (s.w >> 21u);
    var b = select(0u, 1u, (r & 0xffffu) < u.threshold);
    if (j + 1u < end) { b |= select(0u, 2u, (r >> 16u) < u.threshold); }
    word |= b << (j & 31u);
    if (((j + 2u) & 31u) == 0u || j + 2u >= end) {
      bits[j >> 5u] = word;
      word = 0u;
    }
  }
}`;

/** Flags of the fused update: which optional parts run. */
export const UPDATE = {
  /** g += lambda (p - anchor) after clipping (weight decay towards the pretrained weights). */
  pullGradient: 1,
  /** g *= bit * scale from the tensor's bitset (Child-Tuning's masks); kept bits are counted. */
  mask: 2,
  /** p += afterPull (p - anchor) after the Adam step (RecAdam's step rule). */
  pullWeights: 4,
  /** p -= maskDecay p only where the decay bitset's bit is set (D's mask_weight_decay). */
  maskedDecay: 8,
} as const;

/** The uniform block of the fused update, in order (all 32-bit). */
export const UPDATE_FIELDS = [
  'n',
  'flags',
  'slot',
  'coef',
  'scale',
  'lambda',
  'stepSize',
  'b1',
  'b2',
  'eps',
  'decay',
  'afterPull',
  'afterDecay',
  'maskDecay',
] as const;
export const UPDATE_UINTS = new Set(['n', 'flags', 'slot']);

export const UPDATE_WGSL = /* wgsl */ `
struct Step {
  n: u32, flags: u32, slot: u32, coef: f32, scale: f32, lambda: f32,
  stepSize: f32, b1: f32, b2: f32, eps: f32, decay: f32, afterPull: f32, afterDecay: f32, maskDecay: f32,
}
@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> bits: array<u32>;
@group(0) @binding(6) var<storage, read> anchor: array<f32>;
@group(0) @binding(7) var<storage, read> decayBits: array<u32>;
@group(0) @binding(8) var<storage, read_write> kept: array<atomic<u32>>;

fn bit(words: u32, j: u32) -> f32 { return f32((words >> (j & 31u)) & 1u); }

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let j = gid.x + gid.y * groups.x * 256u;
  // Kept bits are counted 256 at a time by the block's first invocation, with one atomic: no workgroup barrier
  // (SwiftShader runs those as coroutines, 20x slower) and few atomics on one counter (a GPU serialises them).
  if ((j & 255u) == 0u && j < u.n && (u.flags & ${UPDATE.mask}u) != 0u) {
    var count = 0u;
    for (var w = 0u; w < 8u; w++) {
      let first = j + 32u * w;
      if (first >= u.n) { break; }
      let valid = select(0xffffffffu, (1u << (u.n - first)) - 1u, u.n - first < 32u);
      count += countOneBits(bits[first >> 5u] & valid);
    }
    atomicAdd(&kept[u.slot], count);
  }
  if (j < u.n) {
    var g = grad[j] * u.coef;
    var w = p[j];
    if ((u.flags & ${UPDATE.pullGradient}u) != 0u) { g += u.lambda * (w - anchor[j]); }
    if ((u.flags & ${UPDATE.mask}u) != 0u) {
      g *= bit(bits[j >> 5u], j) * u.scale;
    }
    let mj = u.b1 * m[j] + (1.0 - u.b1) * g;
    let vj = u.b2 * v[j] + (1.0 - u.b2) * g * g;
    m[j] = mj;
    v[j] = vj;
    w = w - u.stepSize * mj / (sqrt(vj) + u.eps);
    w = w - u.decay * w;
    if ((u.flags & ${UPDATE.pullWeights}u) != 0u) { w += u.afterPull * (w - anchor[j]); }
    w = w - u.afterDecay * w;
    if ((u.flags & ${UPDATE.maskedDecay}u) != 0u) { w -= bit(decayBits[j >> 5u], j) * u.maskDecay * w; }
    p[j] = w;
  }
}`;

/** Workgroups for n elements in the fused update (256 each), folded into two dimensions past the per-dimension limit. */
export function updateGroups(n: number, maxPerDimension: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 256));
  if (groups <= maxPerDimension) return [groups, 1];
  const y = Math.ceil(groups / maxPerDimension);
  return [Math.ceil(groups / y), y];
}
