import { mergeLowRank } from '../../engine/modules/low-rank.js';
import type { ParamSpec } from '../../engine/params.js';
import { encodeSafetensors } from '../../engine/safetensors.js';
import type { OptionsOf, SaveInput, StrategySave } from '../definition.js';
import { headTensorName, modulesToSave, PEFT_CONFIG, PEFT_PREFIX, PEFT_WEIGHTS, peftConfigBase } from '../peft.js';
import { pyFloat, pythonJson } from '../python-json.js';
import { namedTensors, STRATEGY_CONFIG, strategyJson } from '../save-apart.js';
import { loraModifier, loraNames, loraSettings, type Target } from './modifier.js';

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
 * target_modules as PEFT matches them (a module whose name is, or ends with '.' and, an entry): the option's names,
 * unless output.dense is chosen without attention.output.dense, which PEFT's suffix match would also take; then
 * every wrapped module by its full name.
 */
function targetModules(targets: readonly Target[], specs: readonly ParamSpec[]): string[] {
  const ambiguous = targets.includes('output.dense') && !targets.includes('attention.output.dense');
  return ambiguous ? wrappedSites(specs) : [...targets];
}

/** adapter_config.json as PEFT's LoraConfig.save_pretrained writes it (json.dumps, indent 2, sorted keys). */
export function adapterConfig(input: SaveInput<'lora'>): Record<string, unknown> {
  const o = input.options;
  return {
    ...peftConfigBase(input, 'LORA'),
    alpha_pattern: {},
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: o.alpha,
    lora_dropout: pyFloat(o.dropout),
    modules_to_save: modulesToSave(input.config, o.head ?? 'classifier'),
    r: o.r,
    rank_pattern: {},
    target_modules: targetModules(o.target_modules as Target[], input.specs),
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * adapter_model.safetensors's tensors as get_peft_model_state_dict names them (adapter name removed): each A and B
 * as base_model.model.<module>.lora_A.weight / lora_B.weight, and the head that trains (modules_to_save) as
 * base_model.model.<its Hugging Face name>; float32, the checkpoint layout. Also where strategy.json finds each.
 */
export function adapterTensors(input: Pick<SaveInput, 'specs' | 'values'>) {
  const head = headTensorName(PEFT_PREFIX.lora);
  return namedTensors(input, PEFT_WEIGHTS, (s) => (s.source === 'strategy' ? PEFT_PREFIX.lora + s.name : head(s)));
}

/**
 * LoRA's save hook: merged into the weights (default), or apart in PEFT's layout (no model.safetensors: PEFT loads
 * the adapter over base_model_name_or_path), with strategy.json for childtune's own loader.
 */
export function saveLora(input: SaveInput<'lora'>): StrategySave {
  const { options, specs, values } = input;
  if (options.save === 'merged') return { weights: mergedWeights(options, specs, values) };
  const { tensors, where } = adapterTensors(input);
  return {
    weights: null,
    files: {
      [PEFT_CONFIG]: pythonJson(adapterConfig(input)),
      [PEFT_WEIGHTS]: encodeSafetensors(tensors),
      [STRATEGY_CONFIG]: strategyJson('lora', [loraModifier(loraSettings(options))], input.modelDir, where),
    },
  };
}
