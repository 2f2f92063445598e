import type { ParamSpec } from '../../engine/params.js';
import { defineStrategy, kindReport, type StrategyHooks } from '../definition.js';
import { pretrainedBody } from '../pretrained.js';

export interface PreparedWeightDecay {
  lambda: number;
  /** Per tensor: whether the penalty covers it (the pretrained parameters). */
  scoped: boolean[];
}

/** The penalty's value, (lambda/2) ||w - w0||^2, over one tensor (its gradient is what the transform adds). */
export const towardsPretrainedPenalty = (w: Float32Array, w0: Float32Array, lambda: number) =>
  (lambda / 2) * w.reduce((a, x, j) => a + (x - w0[j]) ** 2, 0);

/** Adds lambda (w - w_pretrained) to the (clipped) gradient of each covered tensor; the rest is vanilla AdamW. */
function hooks(d: PreparedWeightDecay): StrategyHooks {
  return {
    kind: 'weight-decay-to-pretrained',
    transform: {
      apply(index, grad, lo, hi, _step, passes, _bits, tensor) {
        if (!d.scoped[index] || d.lambda === 0) return hi - lo;
        if (!tensor?.anchor) throw new Error('the penalty towards the pretrained weights needs the pretrained anchor');
        passes.pull(grad, tensor.weights, tensor.anchor, lo, hi, d.lambda);
        return hi - lo;
      },
      device: (index) => (d.scoped[index] && d.lambda !== 0 ? [{ kind: 'pull', lambda: d.lambda }] : []),
    },
  };
}

export const prepareWeightDecay = (lambda: number, specs: readonly ParamSpec[]): PreparedWeightDecay => ({
  lambda,
  scoped: specs.map(pretrainedBody),
});

export const weightDecayToPretrainedDefinition = defineStrategy({
  kind: 'weight-decay-to-pretrained',
  anchor: (options) => options.lambda !== 0,
  prepare: ({ options, specs }) => prepareWeightDecay(options.lambda!, specs),
  hooks,
  report: (options) => {
    const r = kindReport(options);
    return { results: { ...r.results, lambda: options.lambda }, maskStats: { ...r.maskStats, lambda: options.lambda } };
  },
});
