import { defineModifier, type ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport } from '../definition.js';
import { inHead, type Head } from '../head.js';

/**
 * Freezes the embeddings, every encoder layer below the top `layers` and the part of the head `head` leaves out
 * (they get no gradient and no update).
 */
export const topLayersOnly = defineModifier<{ layers: number; head: Head }>('top-k-layers', (editor, o) => {
  const lowest = editor.config.numLayers - o.layers;
  const trainsHead = inHead(o.head);
  editor.setTrainable(
    (spec) => trainsHead(spec) || (spec.group === 'encoder' && spec.layer !== undefined && spec.layer >= lowest),
  );
});

/** Top-K tuning: vanilla AdamW on the top K layers and the head (`head`); the freezing is the model modifier's. */
export const topKLayersDefinition = defineStrategy({
  kind: 'top-k-layers',
  modifiers: (options) => [topLayersOnly({ layers: options.layers!, head: options.head ?? 'pooler+classifier' })],
  modifierKinds: [topLayersOnly as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'top-k-layers' }),
  report: (options) => {
    const r = kindReport(options);
    const own = { layers: options.layers, head: options.head };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
});
