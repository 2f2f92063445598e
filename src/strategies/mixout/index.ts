import type { ModifierFactory } from '../../engine/modules/modifier.js';
import type { DenseRole } from '../../engine/modules/families.js';
import { defineStrategy, kindReport } from '../definition.js';
import { STREAMS } from '../strategy.js';
import { mixoutModifier } from './mixout-dense.js';

/**
 * Mixout (Lee et al., 2020, after bloodwass/mixout): the chosen dense layers mix their weights with frozen copies
 * of the pretrained ones each step (mixout-dense.ts); the update itself is AdamW's. The copies are the strategy's own parameters (frozen,
 * in the checkpoint, so a resumed run mixes towards the same values), never part of the saved model.
 */
export const mixoutDefinition = defineStrategy({
  kind: 'mixout',
  modifiers: (o) => [
    mixoutModifier({
      p: o.p,
      mask: o.mask,
      keepDropout: o.keep_dropout,
      roles: o.target_modules as DenseRole[],
      stream: STREAMS.mixout,
    }),
  ],
  modifierKinds: [mixoutModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'mixout' }),
  report: (o) => {
    const r = kindReport(o);
    const own = { mixout_p: o.p, mixout_mask: o.mask, mixout_keep_dropout: o.keep_dropout };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
  // The copies are left out: model.safetensors holds the trained weights (what evaluation uses).
  save: ({ values }) => ({ weights: values }),
});
