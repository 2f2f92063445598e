export interface AdamWSettings {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** torch's clip_grad_norm_ factor: maxNorm / (norm + 1e-6) when that is below 1, else 1 (0 turns clipping off). */
export const clipCoefficient = (norm: number, maxNorm: number) => (maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1);

/** What one AdamW step needs besides the arrays: bias-corrected step size and decay for this step. */
export interface AdamWStep {
  stepSize: number;
  decay: number;
  b1: number;
  b2: number;
  eps: number;
}

export function adamwStep(s: AdamWSettings, step: number, lr: number): AdamWStep {
  const [b1, b2] = s.betas;
  return { stepSize: (lr * Math.sqrt(1 - b2 ** step)) / (1 - b1 ** step), decay: lr * s.weightDecay, b1, b2, eps: s.eps };
}

/**
 * AdamW as the Child-Tuning reference (ChildTuningAdamW, after Hugging Face's AdamW) over p[lo, hi): the
 * gradient has already been masked; bias-corrected moments, p -= step_size * m / (sqrt(v) + eps), then
 * decoupled decay p -= lr * wd * p on the updated weights (callers pass decay 0 for biases and LayerNorm).
 * OptimizerKernels.adamw is the same pass in wasm, bit for bit; this one serves state past 4 GiB.
 */
export function adamwRange(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lo: number, hi: number, a: AdamWStep) {
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

/** Linear warmup to the peak, then linear decay to zero (get_linear_schedule_with_warmup), or constant after warmup. */
export function learningRate(step: number, total: number, peak: number, warmupSteps: number, kind: 'linear' | 'constant'): number {
  if (step < warmupSteps) return (peak * step) / Math.max(1, warmupSteps);
  if (kind === 'constant') return peak;
  return peak * Math.max(0, (total - step) / Math.max(1, total - warmupSteps));
}
