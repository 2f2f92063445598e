import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { prefixModifier, prefixSettings } from './modifier.js';
import { savePrefix } from './save.js';

/** Prefix tuning (Li and Liang 2021): key and value prefixes in every layer; every pretrained weight frozen. */
export const prefixTuningDefinition = defineStrategy({
  kind: 'prefix-tuning',
  modifiers: (o) => [prefixModifier(prefixSettings(o))],
  modifierKinds: [prefixModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'prefix-tuning' }),
  report: kindReport,
  save: savePrefix,
});
