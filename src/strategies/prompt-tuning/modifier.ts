import { ChildtuneError } from '../../engine/errors.js';
import { learnedInputRows } from '../../engine/modules/learned-rows.js';
import { defineModifier } from '../../engine/modules/modifier.js';
import { inHead, type Head } from '../head.js';

/** The prompt modifier's plain data. */
export interface PromptSettings {
  length: number;
  init: 'vocabulary' | 'random';
  head: Head;
}

/** The model's word embedding table (every family names it ...embeddings.word_embeddings.weight). */
const WORD_EMBEDDINGS = /(^|\.)embeddings\.word_embeddings\.weight$/;

/** A soft prompt, prompt.embeddings [length, hidden], before every sequence's embeddings; only the head (`head`) trains besides. */
export const promptModifier = defineModifier<PromptSettings>('prompt-tuning', (editor, s) => {
  editor.setTrainable(inHead(s.head));
  const words = editor.specs.find((spec) => WORD_EMBEDDINGS.test(spec.name))!;
  if (s.init === 'vocabulary' && words.shape[1] !== editor.config.hiddenSize)
    throw new ChildtuneError(
      'input',
      `strategy.prompt_init: vocabulary copies word embeddings, but this model embeds into ${words.shape[1]} ` +
        `dimensions and its encoder reads ${editor.config.hiddenSize}`,
      { hint: 'Set strategy.prompt_init: random (--set strategy.prompt_init=random).' },
    );
  const rows = editor.addParam({
    name: 'prompt.embeddings',
    shape: [s.length, editor.config.hiddenSize],
    decay: true,
    group: 'embeddings',
    init: s.init === 'vocabulary' ? { rowsOf: words.name } : { uniform: 0.5 },
  });
  editor.prependInput(learnedInputRows(rows));
});
