import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { encodeSafetensors } from '../../engine/safetensors.js';
import { defineStrategy, kindReport, type OptionsOf, type SaveInput, type StrategySave } from '../definition.js';
import { headTensorName, modulesToSave, PEFT_CONFIG, PEFT_PREFIX, PEFT_WEIGHTS, peftConfigBase } from '../peft.js';
import { pythonJson } from '../python-json.js';
import { namedTensors, STRATEGY_CONFIG, strategyJson } from '../save-apart.js';
import { promptModifier, type PromptInit, type PromptSettings } from './modifier.js';

type PromptOptions = OptionsOf<'prompt-tuning'>;

export const promptSettings = (o: PromptOptions): PromptSettings => ({
  length: o.length ?? 100,
  init: o.prompt_init ?? 'normal',
  head: o.head ?? 'classifier',
});

/** PEFT's prompt_tuning_init for each init (Lester et al.'s uniform has none: the saved prompt makes it moot). */
const PEFT_INIT: Record<PromptInit, string> = { normal: 'RANDOM', vocabulary: 'SAMPLE_VOCAB', uniform: 'RANDOM' };

/** PromptTuningConfig as save_pretrained writes it for this model. */
export function promptConfig(input: SaveInput<'prompt-tuning'>, width: number): Record<string, unknown> {
  const s = promptSettings(input.options);
  return {
    ...peftConfigBase(input, 'PROMPT_TUNING'),
    modules_to_save: modulesToSave(input.config, s.head),
    num_attention_heads: input.config.numHeads,
    num_layers: input.config.numLayers,
    num_transformer_submodules: 1,
    num_virtual_tokens: s.length,
    prompt_tuning_init: PEFT_INIT[s.init],
    prompt_tuning_init_text: null,
    token_dim: width,
    tokenizer_kwargs: null,
    tokenizer_name_or_path: null,
  };
}

/**
 * Saves the prompt in PEFT's layout (adapter_config.json, adapter_model.safetensors: prompt_embeddings [length,
 * width] and the trained head as base_model.<name>, PeftModel.from_pretrained's input over the pretrained model),
 * with strategy.json for childtune's own loader; no model.safetensors (the base is base_model_name_or_path).
 */
export function savePrompt(input: SaveInput<'prompt-tuning'>): StrategySave {
  const s = promptSettings(input.options);
  const head = headTensorName(PEFT_PREFIX.prompt);
  const { tensors, where } = namedTensors(input, PEFT_WEIGHTS, (spec) =>
    spec.name === 'prompt.embeddings' ? 'prompt_embeddings' : head(spec),
  );
  const width = input.specs.find((spec) => spec.name === 'prompt.embeddings')!.shape[1];
  return {
    weights: null,
    files: {
      [PEFT_CONFIG]: pythonJson(promptConfig(input, width)),
      [PEFT_WEIGHTS]: encodeSafetensors(tensors),
      [STRATEGY_CONFIG]: strategyJson('prompt-tuning', [promptModifier(s)], input.modelDir, where),
    },
  };
}

/** Prompt tuning (Lester et al. 2021): a soft prompt before the word embeddings; every pretrained weight frozen. */
export const promptTuningDefinition = defineStrategy({
  kind: 'prompt-tuning',
  modifiers: (o) => [promptModifier(promptSettings(o))],
  modifierKinds: [promptModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'prompt-tuning' }),
  report: kindReport,
  save: savePrompt,
});
