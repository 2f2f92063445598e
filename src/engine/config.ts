import fs from 'node:fs';
import path from 'node:path';
import { ChildtuneError } from './errors.js';

export type Family = 'bert' | 'roberta' | 'electra';

/** The encoder hyper-parameters childtune reads from a Hugging Face config.json. */
export interface ModelConfig {
  family: Family;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  activation: 'gelu' | 'gelu_new' | 'relu';
  hiddenDropout: number;
  attentionDropout: number;
  padTokenId: number;
  /** ELECTRA discriminators embed into a smaller size and project up. */
  embeddingSize: number;
  numLabels?: number;
  doLowerCase?: boolean;
}

/** The most encoder layers a config.json may declare (published BERT-family models have at most 48). */
export const MAX_LAYERS = 10_000;

export class ModelError extends ChildtuneError {
  constructor(
    readonly file: string,
    message: string,
    hint?: string,
  ) {
    super('model', `${file}: ${message}`, { hint });
  }
}

export function readModelConfig(dir: string, family: Family | 'auto' = 'auto'): ModelConfig {
  const file = path.join(dir, 'config.json');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelError(
      file,
      code === 'ENOENT' ? 'not found' : `cannot read (${(e as Error).message})`,
      'A model directory holds config.json, the weights (model.safetensors or pytorch_model.bin, possibly sharded) and the tokenizer files; download one with `childtune fetch MODEL_ID`.',
    );
  }
  return parseModelConfig(raw, file, family);
}

export function parseModelConfig(
  raw: Record<string, unknown>,
  file: string,
  family: Family | 'auto' = 'auto',
): ModelConfig {
  const fix = (key: string) =>
    `Correct '${key}' in ${path.basename(file)} (BERT-base has hidden_size 768, num_hidden_layers 12, num_attention_heads 12, intermediate_size 3072), or download the model again.`;
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new ModelError(file, `'${key}' must be a number (found ${JSON.stringify(raw[key])})`, fix(key));
    return v;
  };
  // Sizes are counts: a fraction, zero or negative value would only fail later, deep in an allocation.
  const count = (key: string, fallback?: number, min = 1): number => {
    const v = num(key, fallback);
    if (!Number.isSafeInteger(v) || v < min)
      throw new ModelError(file, `'${key}' must be a whole number of at least ${min} (found ${v})`, fix(key));
    return v;
  };
  // Every layer is a set of tensors described one by one (plan, model, optimizer), so a wild count would exhaust
  // memory before any estimate could refuse it; the memory estimate judges every count up to this one.
  const layers = (): number => {
    const v = count('num_hidden_layers');
    if (v > MAX_LAYERS)
      throw new ModelError(
        file,
        `'num_hidden_layers' is ${v}; childtune takes at most ${MAX_LAYERS} layers`,
        fix('num_hidden_layers'),
      );
    return v;
  };
  const type = String(raw.model_type ?? '');
  const fam: Family =
    family !== 'auto'
      ? family
      : type === 'roberta' || type === 'electra' || type === 'bert'
        ? type
        : (() => {
            throw new ModelError(
              file,
              `model_type '${type}' is not supported`,
              'Supported: bert, roberta, electra; or set model.family.',
            );
          })();
  const act = String(raw.hidden_act ?? 'gelu');
  if (act !== 'gelu' && act !== 'gelu_new' && act !== 'relu')
    throw new ModelError(file, `hidden_act '${act}' is not supported (gelu, gelu_new, relu)`);
  const hiddenSize = count('hidden_size');
  const numHeads = count('num_attention_heads');
  if (hiddenSize % numHeads !== 0)
    throw new ModelError(file, `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const labels = raw.id2label && typeof raw.id2label === 'object' ? Object.keys(raw.id2label).length : undefined;
  return {
    family: fam,
    vocabSize: count('vocab_size'),
    hiddenSize,
    numLayers: layers(),
    numHeads,
    intermediateSize: count('intermediate_size'),
    maxPositions: count('max_position_embeddings', 512),
    typeVocabSize: count('type_vocab_size', 2),
    layerNormEps: num('layer_norm_eps', 1e-12),
    activation: act,
    hiddenDropout: num('hidden_dropout_prob', 0.1),
    attentionDropout: num('attention_probs_dropout_prob', 0.1),
    padTokenId: count('pad_token_id', fam === 'roberta' ? 1 : 0, 0),
    embeddingSize: count('embedding_size', hiddenSize),
    numLabels: typeof raw.num_labels === 'number' ? raw.num_labels : labels,
    doLowerCase: typeof raw.do_lower_case === 'boolean' ? raw.do_lower_case : undefined,
  };
}

/** Parameter counts by group, for plan estimates (no tensors needed). */
export function parameterCounts(c: ModelConfig, numLabels: number) {
  const h = c.hiddenSize;
  const e = c.embeddingSize;
  const embeddings = (c.vocabSize + c.maxPositions + c.typeVocabSize) * e + 2 * e + (e !== h ? e * h + h : 0);
  const layer =
    4 * (h * h + h) + 2 * h + (h * c.intermediateSize + c.intermediateSize) + (c.intermediateSize * h + h) + 2 * h;
  const encoder = c.numLayers * layer;
  const head = c.family === 'bert' ? h * h + h + h * numLabels + numLabels : h * h + h + h * numLabels + numLabels;
  return { embeddings, encoder, head, total: embeddings + encoder + head };
}
