import type { ModelConfig } from '../../engine/config.js';
import { mergeLowRank } from '../../engine/modules/low-rank.js';
import { trains, type ParamSpec } from '../../engine/params.js';
import { checkpointTensors } from '../../engine/save.js';
import { safetensorsChunks, type TensorToWrite } from '../../engine/safetensors.js';
import type { OptionsOf, SaveInput, StrategySave } from '../definition.js';
import type { Head } from '../head.js';
import { loraNames, type Target } from './modifier.js';

/** PEFT's key prefix for a LoRA model's parameters: PeftModel.base_model (LoraModel), then its .model. */
export const PEFT_PREFIX = 'base_model.model.';
const LORA_A = '.lora_A.weight';

/** The module names (site) of every projection with a LoRA update, in parameter order. */
const wrappedSites = (specs: readonly ParamSpec[]) =>
  specs.filter((s) => s.source === 'strategy' && s.name.endsWith(LORA_A)).map((s) => s.name.slice(0, -LORA_A.length));

/**
 * The model's own weights with each update folded in, W + (alpha/r) B A (engine layout, by spec index): what
 * model.safetensors holds, so the directory loads as a plain transformers model.
 */
export function mergedWeights(o: OptionsOf<'lora'>, specs: readonly ParamSpec[], values: readonly Float32Array[]) {
  const index = new Map(specs.map((s, i) => [s.name, i]));
  const at = (name: string) => values[index.get(name)!];
  const weights = [...values];
  for (const site of wrappedSites(specs)) {
    const names = loraNames(site);
    weights[index.get(`${site}.weight`)!] = mergeLowRank(
      at(`${site}.weight`),
      at(names.a),
      at(names.b),
      o.r,
      o.alpha / o.r,
    );
  }
  return weights;
}

/**
 * The head that trains as PEFT's modules_to_save names it: the classifier (PEFT's SEQ_CLS default), and BERT's
 * pooler, a module apart from its classifier, with head pooler+classifier.
 */
export const modulesToSave = (config: ModelConfig, head: Head) =>
  config.family === 'bert' && head === 'pooler+classifier' ? ['classifier', 'pooler'] : ['classifier'];

/**
 * target_modules as PEFT matches them (a module whose name is, or ends with '.' and, an entry): the option's names,
 * unless output.dense is chosen without attention.output.dense, which PEFT's suffix match would also take; then
 * every wrapped module by its full name.
 */
function targetModules(targets: readonly Target[], specs: readonly ParamSpec[]): string[] {
  const ambiguous = targets.includes('output.dense') && !targets.includes('attention.output.dense');
  return ambiguous ? wrappedSites(specs) : [...targets];
}

/** adapter_config.json as PEFT's LoraConfig.save_pretrained writes it (sorted keys, two-space indent). */
export function adapterConfig(input: SaveInput<'lora'>): Record<string, unknown> {
  const o = input.options;
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: input.modelDir,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    modules_to_save: modulesToSave(input.config, o.head ?? 'classifier'),
    peft_type: 'LORA',
    r: o.r,
    rank_pattern: {},
    revision: null,
    target_modules: targetModules(o.target_modules as Target[], input.specs),
    task_type: 'SEQ_CLS',
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * adapter_model.safetensors's tensors as get_peft_model_state_dict names them (adapter name removed): each A and B
 * as base_model.model.<module>.lora_A.weight / lora_B.weight, and the head that trains (modules_to_save) as
 * base_model.model.<its Hugging Face name>; float32, the checkpoint layout.
 */
export function adapterTensors(
  specs: readonly ParamSpec[],
  values: readonly Float32Array[],
): Map<string, TensorToWrite> {
  const saved = checkpointTensors(specs, values, (s) => s.source === 'strategy' || (s.group === 'head' && trains(s)));
  return new Map([...saved].map(([name, t]) => [PEFT_PREFIX + name, t]));
}

const sortedJson = (value: Record<string, unknown>) =>
  JSON.stringify(
    Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, value[k]]),
    ),
    null,
    2,
  ) + '\n';

/** LoRA's save hook: merged into the weights (default), or apart in PEFT's layout. */
export function saveLora(input: SaveInput<'lora'>): StrategySave {
  const { options, specs, values } = input;
  if (options.save === 'merged') return { weights: mergedWeights(options, specs, values) };
  return {
    weights: null,
    files: {
      'adapter_config.json': sortedJson(adapterConfig(input)),
      'adapter_model.safetensors': safetensorsChunks(adapterTensors(specs, values)),
    },
  };
}
