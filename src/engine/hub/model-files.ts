import { HubError, hubIdOf, type HubRef } from './cache.js';
import { fetchRepo, type FetchOptions } from './download.js';

const CONFIG = ['config.json'];
const TOKENIZER = [
  'vocab.txt',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
];

/**
 * The files of a model repository that childtune needs: the config, the tokenizer files present, and the
 * weights transformers would load, in its order of preference: model.safetensors, else the safetensors index
 * with its shards, else pytorch_model.bin, else the .bin index with its shards. Other formats (TensorFlow,
 * Flax, ONNX) are never downloaded.
 */
export function modelFiles(listing: readonly string[], id: string): string[] {
  const has = new Set(listing);
  if (!has.has('config.json'))
    throw new HubError(
      `${id} has no config.json, so it is not a transformers model repository`,
      'Check the id; childtune loads BERT, RoBERTa and ELECTRA checkpoints as transformers saves them.',
    );
  const shards = (ext: string) => listing.filter((f) => new RegExp(`^(pytorch_)?model-\\d+-of-\\d+\\.${ext}$`).test(f));
  const weights = has.has('model.safetensors')
    ? ['model.safetensors']
    : has.has('model.safetensors.index.json')
      ? ['model.safetensors.index.json', ...shards('safetensors')]
      : has.has('pytorch_model.bin')
        ? ['pytorch_model.bin']
        : has.has('pytorch_model.bin.index.json')
          ? ['pytorch_model.bin.index.json', ...shards('bin')]
          : undefined;
  if (!weights) {
    const other = listing.filter((f) => /\.(h5|msgpack|onnx|ckpt)$/.test(f));
    throw new HubError(
      `${id} has no PyTorch weights (model.safetensors, its index and shards, or pytorch_model.bin)${other.length ? `; it has ${other.join(', ')}` : ''}`,
      'Use a repository that publishes PyTorch or safetensors weights.',
    );
  }
  const tokenizer = TOKENIZER.filter((f) => has.has(f));
  if (!tokenizer.some((f) => ['vocab.txt', 'tokenizer.json', 'vocab.json'].includes(f)))
    throw new HubError(
      `${id} has no tokenizer files (vocab.txt, tokenizer.json or vocab.json)`,
      'Use a repository that publishes its tokenizer with the model.',
    );
  return [...CONFIG, ...tokenizer, ...weights];
}

/** `childtune fetch org/name[@rev]`: the model's config, tokenizer and weights into the hub cache. */
export const fetchModel = (ref: HubRef, opts: FetchOptions = {}) =>
  fetchRepo(ref, (listing) => modelFiles(listing, hubIdOf(ref)), opts);
