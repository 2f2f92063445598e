import { learnedKeyValues } from '../../engine/modules/learned-rows.js';
import { defineModifier, type ModelEditor } from '../../engine/modules/modifier.js';
import type { Param } from '../../engine/modules/param.js';
import type { OptionsOf } from '../definition.js';
import { inHead, type Head } from '../head.js';
import { mlpKeyValues, type PrefixMlpShared } from './mlp-prefix.js';

/** The prefix modifier's plain data. */
export interface PrefixSettings {
  length: number;
  reparameterize: boolean;
  mlpHidden: number;
  head: Head;
  /**
   * after-prefix: the sequences' positions count after the prefix, as transformers numbers them when PEFT passes the
   * prefix as past_key_values (past_key_values_length); from-zero: from 0. Absent (a model saved before the option):
   * from-zero, as it was trained.
   */
  positions?: 'after-prefix' | 'from-zero';
}

/** The modifier's settings: the recipe's options with their defaults. */
export const prefixSettings = (o: OptionsOf<'prefix-tuning'>): PrefixSettings => ({
  length: o.length ?? 10,
  reparameterize: o.reparameterize ?? false,
  mlpHidden: o.mlp_hidden ?? 512,
  head: o.head ?? 'classifier',
  positions: o.positions ?? 'after-prefix',
});

/** Li and Liang's MLP: its shared part and every layer's output columns, as the editor declares them. */
export function declareMlp(editor: ModelEditor, s: PrefixSettings) {
  const h = editor.config.hiddenSize;
  // PEFT's PrefixEncoder: an embedding N(0, 1), then nn.Linear layers (uniform within 1 / sqrt(fan_in)).
  const linear = (name: string, inDim: number, outDim: number, layer?: number) => ({
    weight: editor.addParam({
      name: `${name}.weight`,
      shape: [outDim, inDim],
      transposed: true,
      decay: true,
      init: { uniform: 1 / Math.sqrt(inDim) },
      layer,
    }),
    bias: editor.addParam({ name: `${name}.bias`, shape: [outDim], init: { uniform: 1 / Math.sqrt(inDim) }, layer }),
  });
  const embedding = editor.addParam({
    name: 'prefix.embedding',
    shape: [s.length, h],
    decay: true,
    init: { normal: 1 },
  });
  const shared: PrefixMlpShared = {
    embedding,
    ...linear('prefix.mlp.dense', h, s.mlpHidden),
    firstBackward: editor.config.numLayers - 1,
  };
  return { shared, out: (layer: number) => linear(`prefix.mlp.layer.${layer}`, s.mlpHidden, 2 * h, layer) };
}

/** Plain prefixes: prefix.layer.<l>.key and .value, [l, hidden] each (PEFT's embedding init, N(0, 1)). */
export function declarePlain(editor: ModelEditor, length: number, layer: number): { keys: Param; values: Param } {
  const rows = (part: string) =>
    editor.addParam({
      name: `prefix.layer.${layer}.${part}`,
      shape: [length, editor.config.hiddenSize],
      decay: true,
      init: { normal: 1 },
      layer,
    });
  return { keys: rows('key'), values: rows('value') };
}

/** Key and value prefixes in every encoder layer: the parameters themselves, or an MLP's outputs. */
export const prefixModifier = defineModifier<PrefixSettings>('prefix-tuning', (editor, s) => {
  // The model's own parameters freeze but the head's: every pretrained weight stays as it is.
  editor.setTrainable(inHead(s.head));
  if (s.positions === 'after-prefix') editor.offsetPositions(s.length);
  if (!s.reparameterize) {
    editor.prefixAttention((layer) => {
      const { keys, values } = declarePlain(editor, s.length, layer);
      return learnedKeyValues(keys, values);
    });
    return;
  }
  const { shared, out } = declareMlp(editor, s);
  editor.prefixAttention((layer) => mlpKeyValues(shared, out(layer), layer));
});
