import type { Family } from './config.js';
import { ModelError } from './config.js';
import type { CheckpointTensor } from './weights.js';

/**
 * Legacy parameter names transformers renames on load (PreTrainedModel._fix_state_dict_key_on_load): checkpoints
 * ported from TensorFlow, the original BERT ones among them, call LayerNorm's scale and shift gamma and beta.
 * Its other renames (weight_g/weight_v of weight-normalised convolutions) concern no BERT-family parameter.
 */
const LEGACY_SUFFIXES: [legacy: string, modern: string][] = [
  ['LayerNorm.gamma', 'LayerNorm.weight'],
  ['LayerNorm.beta', 'LayerNorm.bias'],
];

export function modernName(key: string): string {
  for (const [legacy, modern] of LEGACY_SUFFIXES)
    if (key.endsWith(legacy)) return key.slice(0, -legacy.length) + modern;
  return key;
}

export interface NamedTensor extends CheckpointTensor {
  /** The name in the file, before renaming and prefixing. */
  original: string;
}

export interface NormalisedNames {
  tensors: Map<string, NamedTensor>;
  /** How many legacy names were renamed. */
  renamed: number;
  /** Whether the checkpoint is a bare encoder whose names lacked the family prefix (bert., roberta., electra.). */
  prefixed: boolean;
}

/**
 * Names a checkpoint's tensors as the engine does, the way transformers maps a state dict onto a model: legacy
 * names renamed, and when no name carries the base-model prefix (a checkpoint of BertModel rather than of a
 * model with a head), the prefix added to every name.
 */
export function normaliseNames(
  tensors: Map<string, CheckpointTensor>,
  family: Family,
  source: string,
): NormalisedNames {
  const prefix = `${family}.`;
  const prefixed = ![...tensors.keys()].some((k) => k.startsWith(prefix));
  const out = new Map<string, NamedTensor>();
  let renamed = 0;
  for (const [original, tensor] of tensors) {
    const modern = modernName(original);
    if (modern !== original) renamed++;
    const name = prefixed ? prefix + modern : modern;
    const other = out.get(name);
    if (other)
      throw new ModelError(
        source,
        `tensors ${other.original} and ${original} both stand for ${name}`,
        'A checkpoint holds each parameter once; this one mixes legacy and current names.',
      );
    out.set(name, Object.assign(tensor, { original }));
  }
  return { tensors: out, renamed, prefixed };
}

/** The names in a file that would stand for an engine parameter: what a "missing tensor" error says was looked for. */
export function candidateNames(name: string, family: Family): string[] {
  const prefix = `${family}.`;
  const bare = name.startsWith(prefix) ? [name, name.slice(prefix.length)] : [name];
  const legacy = (n: string) =>
    LEGACY_SUFFIXES.filter(([, modern]) => n.endsWith(modern)).map(([old, modern]) => n.slice(0, -modern.length) + old);
  return bare.flatMap((n) => [n, ...legacy(n)]);
}

/** Why encoder tensors are missing, from what the checkpoint does hold: blames config.json only when they disagree. */
export function diagnoseMissing(names: string[], family: Family, numLayers: number): string {
  const embedding = names.find((n) => n.endsWith('embeddings.word_embeddings.weight'));
  const owner = embedding?.slice(0, -'embeddings.word_embeddings.weight'.length).replace(/\.$/, '');
  if (embedding && owner && owner !== family) {
    return `The checkpoint is a '${owner}' model (${embedding}) but config.json says model_type ${family}: the config and the weights do not belong together${['bert', 'roberta', 'electra'].includes(owner) ? `, or set model.family: ${owner}` : ''}.`;
  }
  const layers = new Set(names.map((n) => /encoder\.layer\.(\d+)\./.exec(n)?.[1]).filter((l) => l !== undefined));
  if (layers.size && layers.size < numLayers)
    return `The checkpoint has ${layers.size} encoder layers but config.json says num_hidden_layers ${numLayers}: use the config.json that came with these weights.`;
  if (!embedding)
    return 'The checkpoint holds no embeddings.word_embeddings.weight: it is not a BERT, RoBERTa or ELECTRA encoder, or the file is incomplete.';
  return 'The file is incomplete (an interrupted download or a partial save): fetch the model again.';
}
