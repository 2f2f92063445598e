import { defineModifier, type ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';

/** Freezes the embeddings and every encoder layer below the top `layers` (they get no gradient and no update). */
export const topLayersOnly = defineModifier<{ layers: number }>('top-k-layers', (editor, { layers }) => {
  const lowest = editor.config.numLayers - layers;
  editor.setTrainable(
    (spec) => spec.group === 'head' || (spec.group === 'encoder' && spec.layer !== undefined && spec.layer >= lowest),
  );
});

/** Top-K tuning: vanilla AdamW on the top K layers and the head; the freezing is the model modifier's. */
export const topKLayersDefinition = defineStrategy({
  kind: 'top-k-layers',
  modifiers: (options) => [topLayersOnly({ layers: options.layers! })],
  modifierKinds: [topLayersOnly as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'top-k-layers' }),
  report: (options) => {
    const r = kindReport(options);
    return { results: { ...r.results, layers: options.layers }, maskStats: { ...r.maskStats, layers: options.layers } };
  },
});
