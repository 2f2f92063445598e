import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { loraModifier, loraSettings } from './modifier.js';
import { saveLora } from './save.js';

/**
 * LoRA (Hu et al., 2022): the model's modifier does the work (frozen pretrained weights, low-rank updates beside the
 * targeted projections, the head training); the update itself is plain AdamW.
 */
export const loraDefinition = defineStrategy({
  kind: 'lora',
  modifiers: (o) => [loraModifier(loraSettings(o))],
  modifierKinds: [loraModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'lora' }),
  report: (o) => {
    const r = kindReport(o);
    const lora = { r: o.r, alpha: o.alpha, dropout: o.dropout, target_modules: o.target_modules, head: o.head };
    return { results: { ...r.results, lora }, maskStats: { ...r.maskStats, lora } };
  },
  save: saveLora,
});
