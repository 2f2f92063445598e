import type { SavedTensor } from '../../engine/saved-strategy.js';
import { encodeSafetensors, type TensorToWrite } from '../../engine/safetensors.js';
import type { SaveInput, StrategySave } from '../definition.js';
import { headTensorName, modulesToSave, PEFT_CONFIG, PEFT_PREFIX, PEFT_WEIGHTS, peftConfigBase } from '../peft.js';
import { pythonJson } from '../python-json.js';
import { namedTensors, STRATEGY_CONFIG, strategyJson } from '../save-apart.js';
import { computedPrefixes } from './mlp-prefix.js';
import { prefixModifier, prefixSettings, type PrefixSettings } from './modifier.js';

/** Each layer's key and value prefixes, [length, hidden]: the parameters, or with the MLP the rows it computes. */
function layerPrefixes(input: SaveInput<'prefix-tuning'>, s: PrefixSettings) {
  const { specs, values, config } = input;
  const param = (name: string) => {
    const index = specs.findIndex((p) => p.name === name);
    return { index, spec: specs[index] };
  };
  if (!s.reparameterize)
    return Array.from({ length: config.numLayers }, (_, l) => ({
      keys: values[param(`prefix.layer.${l}.key`).index],
      values: values[param(`prefix.layer.${l}.value`).index],
    }));
  const shared = {
    embedding: param('prefix.embedding'),
    weight: param('prefix.mlp.dense.weight'),
    bias: param('prefix.mlp.dense.bias'),
    firstBackward: config.numLayers - 1,
  };
  const layers = Array.from({ length: config.numLayers }, (_, l) => ({
    weight: param(`prefix.mlp.layer.${l}.weight`),
    bias: param(`prefix.mlp.layer.${l}.bias`),
  }));
  return computedPrefixes((p) => values[p.index], shared, layers);
}

/** PrefixTuningConfig as save_pretrained writes it: the saved prefixes are plain rows (no projection). */
export function prefixConfig(input: SaveInput<'prefix-tuning'>): Record<string, unknown> {
  const s = prefixSettings(input.options);
  const c = input.config;
  return {
    ...peftConfigBase(input, 'PREFIX_TUNING'),
    encoder_hidden_size: c.hiddenSize,
    init_weights: null,
    modules_to_save: modulesToSave(c, s.head),
    num_attention_heads: c.numHeads,
    num_layers: c.numLayers,
    num_transformer_submodules: 1,
    num_virtual_tokens: s.length,
    prefix_projection: false,
    token_dim: c.hiddenSize,
  };
}

/**
 * Saves the prefixes in PEFT's layout: prompt_embeddings [length, layers * 2 * hidden], layer l's keys in column
 * block 2l and its values in 2l + 1 (get_prompt's view and split), and the trained head as base_model.<name>; with
 * the MLP, the prefixes it computes (saved as PEFT's prefix_projection: false). strategy.json rebuilds plain prefixes
 * and reads each layer's columns; no model.safetensors (the base is base_model_name_or_path).
 */
export function savePrefix(input: SaveInput<'prefix-tuning'>): StrategySave {
  const s = prefixSettings(input.options);
  const { config } = input;
  const [P, H, L] = [s.length, config.hiddenSize, config.numLayers];
  const width = L * 2 * H;
  const embeddings = new Float32Array(P * width);
  const where: Record<string, SavedTensor> = {};
  layerPrefixes(input, s).forEach((p, l) => {
    for (const [block, rows, part] of [
      [2 * l, p.keys, 'key'],
      [2 * l + 1, p.values, 'value'],
    ] as const) {
      for (let r = 0; r < P; r++) embeddings.set(rows.subarray(r * H, (r + 1) * H), r * width + block * H);
      where[`prefix.layer.${l}.${part}`] = {
        file: PEFT_WEIGHTS,
        name: 'prompt_embeddings',
        columns: [block * H, (block + 1) * H],
      };
    }
  });
  const head = namedTensors(input, PEFT_WEIGHTS, headTensorName(PEFT_PREFIX.prompt));
  const tensors = new Map<string, TensorToWrite>([
    ['prompt_embeddings', { shape: [P, width], data: embeddings }],
    ...head.tensors,
  ]);
  const plain = prefixModifier({ ...s, reparameterize: false });
  return {
    weights: null,
    files: {
      [PEFT_CONFIG]: pythonJson(prefixConfig(input)),
      [PEFT_WEIGHTS]: encodeSafetensors(tensors),
      [STRATEGY_CONFIG]: strategyJson('prefix-tuning', [plain], input.modelDir, { ...where, ...head.where }),
    },
  };
}
