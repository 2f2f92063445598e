import type { DenseRole } from '../../engine/modules/families.js';
import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { maskTuningModifier } from './masked-dense.js';
import { maskTuningSave } from './save.js';

/**
 * Mask tuning (Zhao et al., 2020, after ptlmasking/maskbert): frozen weights times binarised learned scores
 * (masked-dense.ts), the classifier's output layer masked too by default; AdamW updates the scores (and the
 * classifier when it is not masked). Saving applies the masks (save.ts: maskTuningSave).
 */
export const maskTuningDefinition = defineStrategy({
  kind: 'mask-tuning',
  modifiers: (o) => [
    maskTuningModifier({
      roles: o.target_modules as DenseRole[],
      threshold: o.threshold,
      initialSparsity: o.initial_sparsity,
      initScale: o.init_scale,
    }),
  ],
  modifierKinds: [maskTuningModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'mask-tuning' }),
  report: (o) => {
    const r = kindReport(o);
    const own = { mask_threshold: o.threshold, mask_initial_sparsity: o.initial_sparsity };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
  save: maskTuningSave,
});
