import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { defineStrategy, kindReport, type OptionsOf, type SaveInput } from '../definition.js';
import { saveApart } from '../save-apart.js';
import { promptModifier, type PromptSettings } from './modifier.js';

type PromptOptions = OptionsOf<'prompt-tuning'>;

export const promptSettings = (o: PromptOptions): PromptSettings => ({
  length: o.length ?? 100,
  init: o.prompt_init ?? 'normal',
  head: o.head ?? 'classifier',
});

/** Saves the prompt apart (strategy.safetensors: prompt.embeddings [length, hidden]; strategy.json: the length). */
export const savePrompt = (input: SaveInput<'prompt-tuning'>) =>
  saveApart(input, 'prompt-tuning', { length: promptSettings(input.options).length });

/** Prompt tuning (Lester et al. 2021): a soft prompt before the input embeddings; every pretrained weight frozen. */
export const promptTuningDefinition = defineStrategy({
  kind: 'prompt-tuning',
  modifiers: (o) => [promptModifier(promptSettings(o))],
  modifierKinds: [promptModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'prompt-tuning' }),
  report: kindReport,
  save: savePrompt,
});
