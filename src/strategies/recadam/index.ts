import type { ParamSpec } from '../../engine/params.js';
import { defineStrategy, kindReport, type StrategyHooks } from '../definition.js';
import { pretrainedBody } from '../pretrained.js';

export type Anneal = 'sigmoid' | 'linear' | 'constant';

export interface PreparedRecAdam {
  anneal: Anneal;
  k: number;
  t0: number;
  gamma: number;
  /** Per tensor: whether the penalty covers it (the pretrained parameters; the classifier runs plain AdamW). */
  scoped: boolean[];
}

/** lambda(t), the task loss's weight at optimizer step t (1-based), as RecAdam's annealing functions. */
export function annealed(r: Pick<PreparedRecAdam, 'anneal' | 'k' | 't0'>, t: number): number {
  if (r.anneal === 'constant') return 1;
  if (r.anneal === 'linear') return Math.min(1, t / r.t0);
  return 1 / (1 + Math.exp(-r.k * (t - r.t0)));
}

/** The recall penalty's value over one tensor at weight lambda: (1 - lambda) (gamma/2) ||w - w0||^2. */
export const recallPenalty = (w: Float32Array, w0: Float32Array, gamma: number, lambda: number) =>
  (1 - lambda) * (gamma / 2) * w.reduce((a, x, j) => a + (x - w0[j]) ** 2, 0);

/**
 * The step rule: the Adam step scaled by lambda(t), then p += -lr (1 - lambda(t)) gamma (p - p0), the penalty's
 * gradient taken as a plain gradient step on the stepped weights (outside the moments), before the weight decay.
 */
function hooks(r: PreparedRecAdam): StrategyHooks {
  return {
    kind: 'recadam',
    stepRule(index, step, adam) {
      if (!r.scoped[index]) return undefined;
      const lambda = annealed(r, step);
      return { scale: lambda, pull: -adam.lr * (1 - lambda) * r.gamma };
    },
  };
}

export const prepareRecAdam = (
  o: { anneal: Anneal; k: number; t0: number; gamma: number },
  specs: readonly ParamSpec[],
): PreparedRecAdam => ({ ...o, scoped: specs.map(pretrainedBody) });

export const recAdamDefinition = defineStrategy({
  kind: 'recadam',
  anchor: () => true,
  prepare: ({ options, specs }) =>
    prepareRecAdam({ anneal: options.anneal!, k: options.k!, t0: options.t0!, gamma: options.gamma! }, specs),
  hooks,
  report: (options) => {
    const own = { anneal: options.anneal, k: options.k, t0: options.t0, gamma: options.gamma };
    const r = kindReport(options);
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
});
