import { popcount } from './bitset.js';
import { Rng } from './rng.js';

export interface AdamWSettings {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** torch's clip_grad_norm_ factor: maxNorm / (norm + 1e-6) when that is below 1, else 1 (0 turns clipping off). */
export const clipCoefficient = (norm: number, maxNorm: number) =>
  maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;

/** What one AdamW step needs besides the arrays: bias-corrected step size and decay for this step. */
export interface AdamWStep {
  /** The learning rate of this step (the step size before bias correction). */
  lr: number;
  stepSize: number;
  decay: number;
  b1: number;
  b2: number;
  eps: number;
}

export function adamwStep(s: AdamWSettings, step: number, lr: number): AdamWStep {
  const [b1, b2] = s.betas;
  return {
    lr,
    stepSize: (lr * Math.sqrt(1 - b2 ** step)) / (1 - b1 ** step),
    decay: lr * s.weightDecay,
    b1,
    b2,
    eps: s.eps,
  };
}

/**
 * AdamW as the Child-Tuning reference (ChildTuningAdamW, after Hugging Face's AdamW) over p[lo, hi): the
 * gradient has already been masked; bias-corrected moments, p -= step_size * m / (sqrt(v) + eps), then
 * decoupled decay p -= lr * wd * p on the updated weights (callers pass decay 0 for biases and LayerNorm).
 * The `adamw` of jsPasses.
 */
export function adamwRange(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  lo: number,
  hi: number,
  a: AdamWStep,
) {
  const { stepSize, b1, b2, eps, decay } = a;
  // One pass; fround keeps torch's float32 rounding of the Adam step before the decay reads the weight.
  for (let j = lo; j < hi; j++) {
    const gj = g[j];
    const mj = (m[j] = b1 * m[j] + (1 - b1) * gj);
    const vj = (v[j] = b2 * v[j] + (1 - b2) * gj * gj);
    const pj = Math.fround(p[j] - (stepSize * mj) / (Math.sqrt(vj) + eps));
    p[j] = pj - decay * pj;
  }
}

/** Decoupled weight decay on p[lo, hi) only where the bit is set (D's option to mask decay), after an undecayed step. */
export function decayWhere(p: Float32Array, lo: number, hi: number, bits: Uint8Array, decay: number) {
  for (let j = lo; j < hi; j++) p[j] -= ((bits[j >> 3] >> (j & 7)) & 1) * decay * p[j];
}

/**
 * x[lo, hi) += coef * (p - anchor): a gradient's L2 penalty towards the anchor (x the gradient), or a step of
 * weights towards it (x the weights p themselves; each element is read before it is written).
 */
export function pullTowards(
  x: Float32Array,
  p: Float32Array,
  anchor: Float32Array,
  lo: number,
  hi: number,
  coef: number,
) {
  for (let j = lo; j < hi; j++) x[j] += coef * (p[j] - anchor[j]);
}

/** Decoupled weight decay on p[lo, hi) alone, rounded as adamwRange rounds it after its step. */
export function decayRange(p: Float32Array, lo: number, hi: number, decay: number) {
  for (let j = lo; j < hi; j++) p[j] -= decay * p[j];
}

/**
 * A keep mask over g[lo, hi) from a bitset (bit j at bits[j >> 3], bit j & 7): kept elements times `scale`, the
 * others zeroed. Branch-free: a branch on a 30% keep rate mispredicts often.
 */
export function applyKeepBits(g: Float32Array, bits: Uint8Array, lo: number, hi: number, scale: number) {
  for (let j = lo; j < hi; j++) g[j] *= ((bits[j >> 3] >> (j & 7)) & 1) * scale;
}

/**
 * The per-element passes of the data-parallel reduce and update rounds over [lo, hi) of a tensor. Two
 * implementations give bit-identical results: OptimizerKernels (wasm, over state in a shared wasm memory)
 * and jsPasses (plain JavaScript, for state past 4 GiB, and the reference the tests hold the wasm to).
 */
export interface OptimizerPasses {
  /** g *= coef. */
  scale(g: Float32Array, lo: number, hi: number, coef: number): void;
  /** adamwRange. */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lo: number, hi: number, a: AdamWStep): void;
  /**
   * Child-Tuning-F's mask over [lo, hi): random keep decisions into a bitset, in chunks of `chunk` elements from lo
   * (the last may be shorter), chunk i as new Rng(seeds[i]).bernoulliBits draws them, then applied as fapply with
   * `scale`. Returns how many were kept.
   */
  fmask(
    g: Float32Array,
    bits: Uint8Array,
    lo: number,
    hi: number,
    chunk: number,
    seeds: readonly number[],
    threshold: number,
    scale: number,
  ): number;
  /** applyKeepBits: g *= scale where the bit is set, else 0 (F's mask with scale 1/p; D's with scale 1). */
  fapply(g: Float32Array, bits: Uint8Array, lo: number, hi: number, scale: number): void;
  /** g = w0 g + w1 g1, rounded once; returns `sum` plus the unrounded squares, added in order. */
  reduce2(g: Float32Array, g1: Float32Array, lo: number, hi: number, w0: number, w1: number, sum: number): number;
  /** g += w gk. */
  axpy(g: Float32Array, gk: Float32Array, lo: number, hi: number, w: number): void;
  /** `sum` plus the squares of g, added in order. */
  sumsq(g: Float32Array, lo: number, hi: number, sum: number): number;
  /** pullTowards: x += coef (p - anchor); x may be p itself. */
  pull(x: Float32Array, p: Float32Array, anchor: Float32Array, lo: number, hi: number, coef: number): void;
  /** decayRange: p -= decay p. */
  decay(p: Float32Array, lo: number, hi: number, decay: number): void;
}

export const jsPasses: OptimizerPasses = {
  scale(g, lo, hi, coef) {
    for (let j = lo; j < hi; j++) g[j] *= coef;
  },
  adamw: adamwRange,
  fmask(g, bits, lo, hi, chunk, seeds, threshold, scale) {
    for (let i = 0, start = lo; start < hi; i++, start += chunk)
      new Rng(seeds[i]).bernoulliBits(bits, start, Math.min(hi, start + chunk), threshold);
    applyKeepBits(g, bits, lo, hi, scale);
    return popcount(bits.subarray(lo >> 3), hi - lo);
  },
  fapply: applyKeepBits,
  reduce2(g, g1, lo, hi, w0, w1, sum) {
    for (let j = lo; j < hi; j++) {
      const x = (g[j] = w0 * g[j] + w1 * g1[j]);
      sum += x * x;
    }
    return sum;
  },
  axpy(g, gk, lo, hi, w) {
    for (let j = lo; j < hi; j++) g[j] += w * gk[j];
  },
  sumsq(g, lo, hi, sum) {
    for (let j = lo; j < hi; j++) sum += g[j] * g[j];
    return sum;
  },
  pull: pullTowards,
  decay: decayRange,
};

/** Linear warmup to the peak, then linear decay to zero (get_linear_schedule_with_warmup), or constant after warmup. */
export function learningRate(
  step: number,
  total: number,
  peak: number,
  warmupSteps: number,
  kind: 'linear' | 'constant',
): number {
  if (step < warmupSteps) return (peak * step) / Math.max(1, warmupSteps);
  if (kind === 'constant') return peak;
  return peak * Math.max(0, (total - step) / Math.max(1, total - warmupSteps));
}
