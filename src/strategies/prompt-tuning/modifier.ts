import { learnedInputRows } from '../../engine/modules/learned-rows.js';
import { defineModifier } from '../../engine/modules/modifier.js';
import type { ParamInit } from '../../engine/modules/param.js';
import { inHead, type Head } from '../head.js';

export type PromptInit = 'normal' | 'vocabulary' | 'uniform';

/** The prompt modifier's plain data. */
export interface PromptSettings {
  length: number;
  init: PromptInit;
  head: Head;
}

/** The model's word embedding table (every family names it ...embeddings.word_embeddings.weight). */
const WORD_EMBEDDINGS = /(^|\.)embeddings\.word_embeddings\.weight$/;

/**
 * The prompt's init: PEFT's RANDOM (a fresh nn.Embedding, N(0, 1)), its SAMPLE_VOCAB (rows of the word embedding
 * table, drawn uniformly), or Lester et al.'s random U(-0.5, 0.5).
 */
const INITS: Record<PromptInit, (words: string) => ParamInit> = {
  normal: () => ({ normal: 1 }),
  vocabulary: (words) => ({ rowsOf: words }),
  uniform: () => ({ uniform: 0.5 }),
};

/**
 * A soft prompt, prompt.embeddings [length, embedding width], before every sequence's word embeddings (PEFT's
 * placement: the embeddings' positions, token types and LayerNorm apply to it; the head reads its first row); only
 * the head (`head`) trains besides.
 */
export const promptModifier = defineModifier<PromptSettings>('prompt-tuning', (editor, s) => {
  editor.setTrainable(inHead(s.head));
  const words = editor.specs.find((spec) => WORD_EMBEDDINGS.test(spec.name))!;
  const rows = editor.addParam({
    name: 'prompt.embeddings',
    shape: [s.length, words.shape[1]],
    decay: true,
    group: 'embeddings',
    init: INITS[s.init](words.name),
  });
  editor.prependInput(learnedInputRows(rows));
});
