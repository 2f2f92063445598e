import type { ModelConfig } from './config.js';
import { assemble } from './modules/families.js';
import { applyModifiers, type ModelModifier } from './modules/modifier.js';
import type { ParamSpec } from './modules/param.js';

export { internalShape, sizeOf, trains, type ParamGroup, type ParamInit, type ParamSpec } from './modules/param.js';
export { prefixOf } from './modules/families.js';

/** Every parameter of an encoder plus its sequence-classification head, in a fixed order, then the modifiers' own. */
export function paramSpecs(c: ModelConfig, numLabels: number, modifiers: readonly ModelModifier[] = []): ParamSpec[] {
  const model = assemble(c, numLabels);
  applyModifiers(model, c, numLabels, modifiers);
  return model.params.specs;
}

/** Checkpoint tensors that belong to pretraining objectives: ignored with a note when fine-tuning. */
export const PRETRAINING_HEADS = [
  /^cls\./,
  /^lm_head\./,
  /^discriminator_predictions\./,
  /^generator_/,
  /^(bert|roberta|electra)\.embeddings\.position_ids$/,
  /^embeddings\.position_ids$/,
];

/**
 * The position rows a pass over sequences of `seq` tokens reads with the modifiers applied (a prompt before the
 * sequences, or a prefix their positions count after, reads further), what it reads without them, and how many
 * rows the model has.
 */
export function positionRows(c: ModelConfig, numLabels: number, modifiers: readonly ModelModifier[], seq: number) {
  const needed = (m: readonly ModelModifier[]) => {
    const model = assemble(c, numLabels);
    applyModifiers(model, c, numLabels, m);
    return model.embeddings.positionsNeeded(seq);
  };
  return { needed: needed(modifiers), plain: needed([]), rows: c.maxPositions };
}
