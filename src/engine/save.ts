import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic } from './files.js';
import type { Family } from './config.js';
import type { EncoderClassifier } from './model.js';
import { internalShape, sizeOf, type ParamSpec } from './params.js';
import { safetensorsChunks, type TensorToWrite } from './safetensors.js';
import { readTokenizerConfig } from './tokenizer-config.js';
import { wordPieceTokenizerJson } from './tokenizer-json.js';
import { readWordPieceVocab, WORDPIECE_SPECIALS } from './tokenizer.js';

/**
 * The transformers release whose `save_pretrained` layout the saved model follows: config.json written with
 * `torch_dtype` (4.56 renamed it `dtype`; both read either), keys sorted, only values that differ from
 * PretrainedConfig's defaults, plus every attribute of the model's own config class.
 */
export const TRANSFORMERS_VERSION = '4.46.3';

/** Each family's config class attributes with their defaults (BertConfig, RobertaConfig, ElectraConfig). */
const CLASS_DEFAULTS: Record<Family, Record<string, unknown>> = {
  bert: {
    vocab_size: 30522,
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    use_cache: true,
    classifier_dropout: null,
  },
  roberta: {
    vocab_size: 30522,
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    pad_token_id: 1,
    bos_token_id: 0,
    eos_token_id: 2,
    position_embedding_type: 'absolute',
    use_cache: true,
    classifier_dropout: null,
  },
  electra: {
    vocab_size: 30522,
    embedding_size: 128,
    hidden_size: 256,
    num_hidden_layers: 12,
    num_attention_heads: 4,
    intermediate_size: 1024,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    summary_type: 'first',
    summary_use_proj: true,
    summary_activation: 'gelu',
    summary_last_dropout: 0.1,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    use_cache: true,
    classifier_dropout: null,
  },
};

/**
 * PretrainedConfig's own defaults (with the generation defaults older configs still carry): a key of the input
 * config.json holding one of these is dropped, as `to_diff_dict` drops it, unless the class declares it.
 */
const PRETRAINED_DEFAULTS: Record<string, unknown> = {
  return_dict: true,
  output_hidden_states: false,
  output_attentions: false,
  torchscript: false,
  torch_dtype: null,
  use_bfloat16: false,
  tf_legacy_loss: false,
  pruned_heads: {},
  tie_word_embeddings: true,
  chunk_size_feed_forward: 0,
  is_encoder_decoder: false,
  is_decoder: false,
  cross_attention_hidden_size: null,
  add_cross_attention: false,
  tie_encoder_decoder: false,
  architectures: null,
  finetuning_task: null,
  tokenizer_class: null,
  prefix: null,
  bos_token_id: null,
  pad_token_id: null,
  eos_token_id: null,
  sep_token_id: null,
  decoder_start_token_id: null,
  task_specific_params: null,
  problem_type: null,
  _name_or_path: '',
  max_length: 20,
  min_length: 0,
  do_sample: false,
  early_stopping: false,
  num_beams: 1,
  num_beam_groups: 1,
  diversity_penalty: 0,
  temperature: 1,
  top_k: 50,
  top_p: 1,
  typical_p: 1,
  repetition_penalty: 1,
  length_penalty: 1,
  no_repeat_ngram_size: 0,
  encoder_no_repeat_ngram_size: 0,
  bad_words_ids: null,
  num_return_sequences: 1,
  output_scores: false,
  return_dict_in_generate: false,
  forced_bos_token_id: null,
  forced_eos_token_id: null,
  remove_invalid_values: false,
  exponential_decay_length_penalty: null,
  suppress_tokens: null,
  begin_suppress_tokens: null,
};

/** Keys of an input config.json that a loaded PretrainedConfig does not keep as attributes. */
const NOT_KEPT = ['num_labels', 'transformers_version'];

const ARCHITECTURES: Record<Family, string> = {
  bert: 'BertForSequenceClassification',
  roberta: 'RobertaForSequenceClassification',
  electra: 'ElectraForSequenceClassification',
};

export interface SaveOptions {
  /** The model directory the weights came from: its config.json keys and tokenizer files carry over. */
  source?: string;
  /** Class names in label-index order (id2label); ignored for a regression head (one output). */
  labels?: string[];
  /**
   * The values model.safetensors holds for the model's own tensors (engine layout, by spec index), e.g. with a
   * strategy's update merged in; null writes no model.safetensors. Default: the model's values. Parameters a
   * modifier added (source 'strategy') are never written; a model with any needs this option set (a decision on
   * how they are saved), else saving fails rather than silently dropping them.
   */
  weights?: readonly Float32Array[] | null;
  /** Further files written into the directory, by relative path (a strategy's own layout, e.g. PEFT's adapter files). */
  files?: Record<string, string | Uint8Array | Iterable<Uint8Array>>;
}

/**
 * Writes what transformers' `save_pretrained` writes for sequence classification (model and tokenizer):
 * config.json, model.safetensors (F32), the tokenizer files of the source, and tokenizer_config.json plus
 * special_tokens_map.json generated where the source lacked them, so `from_pretrained` and `pipeline()` load it.
 */
export function saveModel(model: EncoderClassifier, dir: string, options: SaveOptions = {}) {
  const added = model.specs.filter((s) => s.source === 'strategy');
  if (added.length && options.weights === undefined)
    throw new Error(
      `cannot save a model with parameters a strategy added (${added[0].name}, ...) without being told how: merge them into the weights or save them apart`,
    );
  fs.mkdirSync(dir, { recursive: true });
  const weights = options.weights === undefined ? model.values : options.weights;
  if (weights)
    writeAtomic(path.join(dir, 'model.safetensors'), safetensorsChunks(checkpointTensors(model.specs, weights)));
  for (const [name, data] of Object.entries(options.files ?? {})) {
    // A strategy's layout may keep its files in a folder of their own (AdapterHub's adapter/).
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeAtomic(path.join(dir, name), data);
  }
  const source = options.source && path.resolve(options.source) !== path.resolve(dir) ? options.source : undefined;
  const input = source ? readJson(path.join(source, 'config.json')) : {};
  writeAtomic(path.join(dir, 'config.json'), sortedJson(classificationConfig(model, input, options.labels, source)));
  // By content, not copyFileSync: a read-only source's mode must not make the saved copy read-only.
  if (source)
    for (const f of TOKENIZER_FILES)
      if (fs.existsSync(path.join(source, f))) writeAtomic(path.join(dir, f), fs.readFileSync(path.join(source, f)));
  writeTokenizerConfigs(dir, model);
}

/** The tokenizer files save_pretrained writes (slow and fast); the two generated ones are written only if absent. */
const TOKENIZER_FILES = [
  'vocab.txt',
  'vocab.json',
  'merges.txt',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
];

/** config.json as `save_pretrained` writes it for this model and task. */
function classificationConfig(
  model: EncoderClassifier,
  input: Record<string, unknown>,
  labels: string[] | undefined,
  source?: string,
): Record<string, unknown> {
  const c = model.config;
  const classDefaults = CLASS_DEFAULTS[c.family];
  const kept = Object.fromEntries(
    Object.entries(input).filter(
      ([k, v]) =>
        !NOT_KEPT.includes(k) &&
        (k in classDefaults || !(k in PRETRAINED_DEFAULTS) || !sameValue(v, PRETRAINED_DEFAULTS[k])),
    ),
  );
  const regression = model.numLabels === 1;
  const names =
    regression || !labels || labels.length !== model.numLabels
      ? Array.from({ length: model.numLabels }, (_, i) => `LABEL_${i}`)
      : labels;
  // id2label is left out when it is the default ({0: LABEL_0, 1: LABEL_1}), as to_diff_dict leaves it out.
  const isDefault = names.length === 2 && names[0] === 'LABEL_0' && names[1] === 'LABEL_1';
  return {
    ...classDefaults,
    ...kept,
    model_type: c.family,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    intermediate_size: c.intermediateSize,
    hidden_act: c.activation,
    hidden_dropout_prob: c.hiddenDropout,
    attention_probs_dropout_prob: c.attentionDropout,
    max_position_embeddings: c.maxPositions,
    type_vocab_size: c.typeVocabSize,
    layer_norm_eps: c.layerNormEps,
    pad_token_id: c.padTokenId,
    ...(c.embeddingSize !== c.hiddenSize || 'embedding_size' in classDefaults
      ? { embedding_size: c.embeddingSize }
      : {}),
    ...(source ? { _name_or_path: source } : {}),
    architectures: [ARCHITECTURES[c.family]],
    ...(isDefault
      ? {}
      : {
          id2label: Object.fromEntries(names.map((l, i) => [String(i), l])),
          label2id: Object.fromEntries(names.map((l, i) => [l, i])),
        }),
    problem_type: regression ? 'regression' : 'single_label_classification',
    torch_dtype: 'float32',
    transformers_version: TRANSFORMERS_VERSION,
  };
}

/** The special tokens of each tokenizer kind, as the Hugging Face tokenizer classes declare them. */
const SPECIALS = {
  wordpiece: { unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]' },
  bpe: {
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    sep_token: '</s>',
    pad_token: '<pad>',
    cls_token: '<s>',
    mask_token: '<mask>',
  },
} as const;

/** tokenizer_config.json and special_tokens_map.json, where the source did not have them. */
function writeTokenizerConfigs(dir: string, model: EncoderClassifier) {
  // The files decide the tokenizer kind (a RoBERTa-shaped model may carry a WordPiece vocab.txt); the family only breaks a tie.
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  const bpe = has('vocab.json') || (!has('vocab.txt') && model.config.family === 'roberta');
  const specials = bpe ? SPECIALS.bpe : SPECIALS.wordpiece;
  const configFile = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(configFile)) {
    const common = { model_max_length: model.config.maxPositions, clean_up_tokenization_spaces: !bpe, ...specials };
    const config = bpe
      ? {
          ...common,
          tokenizer_class: 'RobertaTokenizer',
          add_prefix_space: false,
          errors: 'replace',
          trim_offsets: true,
        }
      : {
          ...common,
          tokenizer_class: model.config.family === 'electra' ? 'ElectraTokenizer' : 'BertTokenizer',
          do_lower_case: model.config.doLowerCase ?? true,
          do_basic_tokenize: true,
          never_split: null,
          strip_accents: null,
          tokenize_chinese_chars: true,
          added_tokens_decoder: addedTokens(dir, Object.values(specials)),
        };
    writeAtomic(configFile, sortedJson(config));
  }
  const mapFile = path.join(dir, 'special_tokens_map.json');
  if (!fs.existsSync(mapFile)) writeAtomic(mapFile, sortedJson({ ...specials }));
  if (!bpe && has('vocab.txt') && !has('tokenizer.json')) writeFastTokenizer(dir, model);
}

/**
 * tokenizer.json for a WordPiece model, as BertTokenizerFast's save_pretrained writes it beside vocab.txt, with the
 * settings the model is read with: tokenizer_config.json's, config.json's do_lower_case first (as loadTokenizer).
 */
function writeFastTokenizer(dir: string, model: EncoderClassifier) {
  const config = readTokenizerConfig(dir);
  const special = {
    ...WORDPIECE_SPECIALS,
    ...config.special,
    additional: config.special.additional ?? [],
  };
  const vocab = readWordPieceVocab(path.join(dir, 'vocab.txt'), special);
  writeAtomic(
    path.join(dir, 'tokenizer.json'),
    wordPieceTokenizerJson(vocab, {
      lowerCase: model.config.doLowerCase ?? config.doLowerCase ?? true,
      stripAccents: config.stripAccents ?? null,
      tokenizeChineseChars: config.tokenizeChineseChars ?? true,
      special,
    }),
  );
}

/** added_tokens_decoder of a WordPiece tokenizer: each special token by its id in vocab.txt. */
function addedTokens(dir: string, tokens: readonly string[]): Record<string, unknown> {
  const file = path.join(dir, 'vocab.txt');
  if (!fs.existsSync(file)) return {};
  const ids = new Map(
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .map((t, i) => [t.replace(/\r$/, ''), i]),
  );
  const entries = tokens
    .filter((t) => ids.has(t))
    .map((t) => [ids.get(t)!, t] as const)
    .sort((a, b) => a[0] - b[0]);
  return Object.fromEntries(
    entries.map(([id, content]) => [
      String(id),
      { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
    ]),
  );
}

/**
 * The model's own tensors (not a strategy's) in the checkpoint's layout, by name, to stream: transposed ones are
 * turned back one at a time in a single scratch buffer.
 */
export function checkpointTensors(
  specs: readonly ParamSpec[],
  values: readonly Float32Array[],
  include: (spec: ParamSpec) => boolean = (s) => s.source !== 'strategy',
): Map<string, TensorToWrite> {
  const chosen = specs.filter(include);
  const scratch = new Float32Array(saveScratchElements(chosen));
  const tensors = new Map<string, TensorToWrite>();
  specs.forEach((spec, i) => {
    if (!include(spec)) return;
    const [rows, cols] = internalShape(spec);
    tensors.set(spec.name, {
      shape: spec.shape,
      data: spec.transposed ? () => toCheckpointLayout(values[i], rows, cols, scratch) : values[i],
    });
  });
  return tensors;
}

/** Elements of the one buffer saving needs besides the weights: the largest tensor stored transposed. */
export const saveScratchElements = (specs: readonly ParamSpec[]) =>
  Math.max(0, ...specs.filter((s) => s.transposed).map(sizeOf));

/** Copies the engine's [in, out] layout back to the checkpoint's [out, in], into the front of `scratch`. */
function toCheckpointLayout(src: Float32Array, rows: number, cols: number, scratch: Float32Array): Float32Array {
  const out = scratch.subarray(0, src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function readJson(file: string): Record<string, unknown> {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
}

const sameValue = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** JSON with sorted keys and two-space indent, as Python's json.dumps(indent=2, sort_keys=True) writes it. */
function sortedJson(value: Record<string, unknown>): string {
  const sort = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
        )
      : v;
  return JSON.stringify(sort(value), null, 2) + '\n';
}
