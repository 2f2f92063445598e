import { defineModifier, type ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';

/** Freezes every parameter of the model but its bias terms and its task head (they get no gradient and no update). */
export const biasesOnly = defineModifier<Record<string, never>>('bitfit-biases-only', (editor) =>
  editor.setTrainable((spec) => spec.group === 'head' || spec.name.endsWith('.bias')),
);

/** BitFit: vanilla AdamW on the biases and the head; the freezing is the model modifier's. */
export const bitfitDefinition = defineStrategy({
  kind: 'bitfit',
  modifiers: () => [biasesOnly({})],
  modifierKinds: [biasesOnly as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'bitfit' }),
  report: kindReport,
});
