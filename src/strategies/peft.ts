import type { ModelConfig } from '../engine/config.js';
import { trains, type ParamSpec } from '../engine/params.js';
import type { SaveInput } from './definition.js';
import type { Head } from './head.js';

/** PEFT's file names (save_pretrained): the config and the weights. */
export const PEFT_CONFIG = 'adapter_config.json';
export const PEFT_WEIGHTS = 'adapter_model.safetensors';

/**
 * PEFT's key prefix for a model's parameters in adapter_model.safetensors: PeftModel.base_model is the tuner (LoRA:
 * LoraModel, then its .model) or, for prompt learning, the transformers model itself (get_peft_model_state_dict).
 */
export const PEFT_PREFIX = { lora: 'base_model.model.', prompt: 'base_model.' } as const;

/**
 * The head that trains as PEFT's modules_to_save names it: the classifier (PEFT's SEQ_CLS default), and BERT's
 * pooler, a module apart from its classifier, with head pooler+classifier.
 */
export const modulesToSave = (config: ModelConfig, head: Head) =>
  config.family === 'bert' && head === 'pooler+classifier' ? ['classifier', 'pooler'] : ['classifier'];

/**
 * The saved name of a trained head tensor (a modules_to_save module's, its adapter name removed as
 * get_peft_model_state_dict removes it): the prefix and its Hugging Face name; null for any other tensor.
 */
export const headTensorName = (prefix: string) => (spec: ParamSpec) =>
  spec.source !== 'strategy' && spec.group === 'head' && trains(spec) ? prefix + spec.name : null;

/** The fields of PeftConfig every PEFT method's adapter_config.json has, for a saved SEQ_CLS model. */
export const peftConfigBase = (input: Pick<SaveInput, 'modelDir'>, peftType: string) => ({
  auto_mapping: null,
  base_model_name_or_path: input.modelDir,
  inference_mode: true,
  peft_type: peftType,
  revision: null,
  task_type: 'SEQ_CLS',
});
