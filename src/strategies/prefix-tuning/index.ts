import type { ModifierFactory } from '../../engine/modules/modifier.js';
import type { TensorToWrite } from '../../engine/safetensors.js';
import { defineStrategy, kindReport, type OptionsOf, type SaveInput, type StrategySave } from '../definition.js';
import { saveApart } from '../save-apart.js';
import { computedPrefixes } from './mlp-prefix.js';
import { prefixModifier, type PrefixSettings } from './modifier.js';

type PrefixOptions = OptionsOf<'prefix-tuning'>;

export const prefixSettings = (o: PrefixOptions): PrefixSettings => ({
  length: o.length ?? 10,
  reparameterize: o.reparameterize ?? false,
  mlpHidden: o.mlp_hidden ?? 512,
  head: o.head ?? 'classifier',
});

/**
 * Saves the prefixes apart (strategy.safetensors: prefix.layer.<l>.key and .value, [l, hidden]; strategy.json):
 * with the MLP, the prefixes it computes, so the saved strategy is plain prefixes either way and the MLP is dropped.
 */
export function savePrefix(input: SaveInput<'prefix-tuning'>): StrategySave {
  const s = prefixSettings(input.options);
  const { specs, values, config } = input;
  if (!s.reparameterize) return saveApart(input, 'prefix-tuning', { length: s.length, reparameterize: false });
  const param = (name: string) => {
    const index = specs.findIndex((p) => p.name === name);
    return { index, spec: specs[index] };
  };
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
  const shape = [s.length, config.hiddenSize];
  const tensors = new Map<string, TensorToWrite>();
  computedPrefixes((p) => values[p.index], shared, layers).forEach((p, l) => {
    tensors.set(`prefix.layer.${l}.key`, { shape, data: p.keys });
    tensors.set(`prefix.layer.${l}.value`, { shape, data: p.values });
  });
  return saveApart(input, 'prefix-tuning', { length: s.length, reparameterize: false }, tensors);
}

/** Prefix tuning (Li and Liang 2021): key and value prefixes in every layer; every pretrained weight frozen. */
export const prefixTuningDefinition = defineStrategy({
  kind: 'prefix-tuning',
  modifiers: (o) => [prefixModifier(prefixSettings(o))],
  modifierKinds: [prefixModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'prefix-tuning' }),
  report: kindReport,
  save: savePrefix,
});
