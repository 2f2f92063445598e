import type { ModifierFactory } from '../../engine/modules/modifier.js';
import type { EncoderClassifier } from '../../engine/model.js';
import { defineStrategy, kindReport, type OptionsOf } from '../definition.js';
import { saveApart, strategyTensors } from '../save-apart.js';
import { promptModifier, type PromptSettings } from './modifier.js';

type PromptOptions = OptionsOf<'prompt-tuning'>;

export const promptSettings = (o: PromptOptions): PromptSettings => ({
  length: o.length ?? 100,
  init: o.prompt_init ?? 'vocabulary',
});

/** Saves the prompt apart (strategy.safetensors: prompt.embeddings [length, hidden]; strategy.json: the length). */
export const savePrompt = (model: EncoderClassifier, dir: string, options: PromptOptions) =>
  saveApart(dir, 'prompt-tuning', { length: promptSettings(options).length }, strategyTensors(model));

/** Prompt tuning (Lester et al. 2021): a soft prompt before the input embeddings; every pretrained weight frozen. */
export const promptTuningDefinition = defineStrategy({
  kind: 'prompt-tuning',
  modifiers: (o) => [promptModifier(promptSettings(o))],
  modifierKinds: [promptModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'prompt-tuning' }),
  report: kindReport,
});
