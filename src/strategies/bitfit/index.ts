import { defineModifier, type ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { inHead, type Head } from '../head.js';

/** Freezes every parameter of the model but its bias terms and the head (they get no gradient and no update). */
export const biasesOnly = defineModifier<{ head: Head }>('bitfit-biases-only', (editor, { head }) => {
  const trainsHead = inHead(head);
  editor.setTrainable((spec) => trainsHead(spec) || spec.name.endsWith('.bias'));
});

/** BitFit: vanilla AdamW on the biases and the classifier (`head`); the freezing is the model modifier's. */
export const bitfitDefinition = defineStrategy({
  kind: 'bitfit',
  modifiers: (o) => [biasesOnly({ head: o.head ?? 'classifier' })],
  modifierKinds: [biasesOnly as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'bitfit' }),
  report: kindReport,
});
