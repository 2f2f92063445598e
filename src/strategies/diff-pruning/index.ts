import type { DenseRole } from '../../engine/modules/families.js';
import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { adamwStep } from '../../engine/optimizer.js';
import { defineStrategy, kindReport } from '../definition.js';
import { STREAMS } from '../strategy.js';
import { diffPruningModifier } from './diff-dense.js';
import { LOG_ALPHA, TENSOR_LOG_ALPHA } from './gated-diff.js';
import { diffPruningSave } from './save.js';

/** Which tensors are gate parameters (stepped by their own AdamW), and its learning rate. */
interface PreparedDiff {
  gates: boolean[];
  lr: number;
}

/**
 * Diff pruning (Guo et al., 2021, after dguo98/DiffPruning run_glue_diffpruning.py): frozen pretrained tensors
 * plus hard-concrete-gated differences (gated-diff.ts), the L0 penalty inside the layers' backward. The run's
 * AdamW updates the differences and the classifier; the gates' log_alpha have their own AdamW, at a constant
 * `alpha_lr` without weight decay, as the reference's alpha_optimizer. Saving merges the differences (save.ts).
 */
export const diffPruningDefinition = defineStrategy({
  kind: 'diff-pruning',
  modifiers: (o) => [
    diffPruningModifier({
      roles: o.target_modules as DenseRole[],
      lambda: o.lambda,
      alphaInit: o.alpha_init,
      stream: STREAMS.gateNoise,
    }),
  ],
  modifierKinds: [diffPruningModifier as ModifierFactory],
  prepare: ({ specs, options }): PreparedDiff => ({
    gates: specs.map((s) => s.name.endsWith(LOG_ALPHA) || s.name.endsWith(TENSOR_LOG_ALPHA)),
    lr: options.alpha_lr,
  }),
  hooks: ({ gates, lr }: PreparedDiff) => ({
    kind: 'diff-pruning',
    ownStep: (index, step, adam) =>
      gates[index] ? adamwStep({ lr, betas: [adam.b1, adam.b2], eps: adam.eps, weightDecay: 0 }, step, lr) : undefined,
  }),
  report: (o) => {
    const r = kindReport(o);
    const own = { diff_lambda: o.lambda, diff_alpha_init: o.alpha_init, diff_alpha_lr: o.alpha_lr };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
  save: diffPruningSave,
});
