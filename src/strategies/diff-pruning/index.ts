import type { DenseRole } from '../../engine/modules/families.js';
import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { STREAMS } from '../strategy.js';
import { diffPruningModifier } from './diff-dense.js';
import { diffPruningSave } from './save.js';

/**
 * Diff pruning (Guo et al., 2021): frozen pretrained weights plus hard-concrete-gated differences (diff-dense.ts),
 * the expected L0 penalty inside the layers' backward; AdamW updates the differences, the gates and the classifier.
 * Saving merges the differences (save.ts: diffPruningSave).
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
  prepare: () => ({}),
  hooks: () => ({ kind: 'diff-pruning' }),
  report: (o) => {
    const r = kindReport(o);
    const own = { diff_lambda: o.lambda, diff_alpha_init: o.alpha_init };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
  save: diffPruningSave,
});
