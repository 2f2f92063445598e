import type { ParamSpec } from './params.js';

export interface AdamWSettings {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/**
 * Rewrites a parameter's gradient in place before the Adam moments see it (the Child-Tuning hook).
 * `decayMask`, when given, limits weight decay to the elements whose bit is set.
 */
export interface GradientHook {
  maskGradient(index: number, grad: Float32Array, spec: ParamSpec): void;
  decayMask?(index: number): Uint8Array | undefined;
}

/** Sum of squares over every gradient, then one scale if the norm exceeds maxNorm (torch's clip_grad_norm_). */
export function clipGlobalNorm(grads: Float32Array[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  if (maxNorm > 0) {
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef;
  }
  return norm;
}

/**
 * AdamW as the Child-Tuning reference (ChildTuningAdamW, after Hugging Face's AdamW): the gradient hook runs
 * first, then bias-corrected moments, p -= lr_t * m / (sqrt(v) + eps), then decoupled decay p -= lr * wd * p
 * on the updated weights, skipped for biases and LayerNorm parameters.
 */
export class AdamW {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;

  constructor(private readonly specs: readonly ParamSpec[], private readonly s: AdamWSettings) {
    this.m = specs.map((p) => new Float32Array(p.shape.reduce((a, b) => a * b, 1)));
    this.v = this.m.map((m) => new Float32Array(m.length));
  }

  update(values: Float32Array[], grads: Float32Array[], lr: number, hook?: GradientHook) {
    this.step++;
    const [b1, b2] = this.s.betas;
    const stepSize = (lr * Math.sqrt(1 - b2 ** this.step)) / (1 - b1 ** this.step);
    const decay = lr * this.s.weightDecay;
    for (let i = 0; i < values.length; i++) {
      const g = grads[i];
      hook?.maskGradient(i, g, this.specs[i]);
      const p = values[i];
      const m = this.m[i];
      const v = this.v[i];
      const eps = this.s.eps;
      for (let j = 0; j < p.length; j++) {
        const gj = g[j];
        const mj = (m[j] = b1 * m[j] + (1 - b1) * gj);
        const vj = (v[j] = b2 * v[j] + (1 - b2) * gj * gj);
        p[j] -= (stepSize * mj) / (Math.sqrt(vj) + eps);
      }
      if (decay > 0 && this.specs[i].decay) {
        const bits = hook?.decayMask?.(i);
        if (bits) {
          for (let j = 0; j < p.length; j++) if ((bits[j >> 3] >> (j & 7)) & 1) p[j] -= decay * p[j];
        } else for (let j = 0; j < p.length; j++) p[j] -= decay * p[j];
      }
    }
  }
}

/** Linear warmup to the peak, then linear decay to zero (get_linear_schedule_with_warmup), or constant after warmup. */
export function learningRate(step: number, total: number, peak: number, warmupSteps: number, kind: 'linear' | 'constant'): number {
  if (step < warmupSteps) return (peak * step) / Math.max(1, warmupSteps);
  if (kind === 'constant') return peak;
  return peak * Math.max(0, (total - step) / Math.max(1, total - warmupSteps));
}
