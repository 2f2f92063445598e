import fs from 'node:fs';
import path from 'node:path';
import { ModelError, readModelConfig, type Family, type ModelConfig } from './config.js';
import { EncoderClassifier } from './model.js';
import { internalShape, PRETRAINING_HEADS, sizeOf, type ParamSpec } from './params.js';
import { Rng } from './rng.js';
import { encodeSafetensors, readSafetensors } from './safetensors.js';
import { TOKENIZER_FILES } from '../plan/fingerprint.js';
import { writeAtomic } from './files.js';

/** Parsed checkpoints of this process by file identity: the trials of a sweep share one read of the weights. */
const parsed = new Map<string, ReturnType<typeof readSafetensors>>();

function readCached(file: string) {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  const key = `${file}:${stat?.size}:${stat?.mtimeMs}`;
  let tensors = parsed.get(key);
  if (!tensors) {
    tensors = readSafetensors(file);
    parsed.clear();
    parsed.set(key, tensors);
  }
  return tensors;
}

export interface LoadedModel {
  model: EncoderClassifier;
  /** What the loader did that a user should know (ignored heads, fresh classifier). */
  notes: string[];
}

/** Copies [out, in] (checkpoint) into [in, out] (engine), or back. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

export function initialValue(spec: ParamSpec, rng: Rng, std = 0.02): Float32Array {
  const v = new Float32Array(sizeOf(spec));
  if (spec.init === 'ones') v.fill(1);
  else if (spec.init === 'normal') for (let i = 0; i < v.length; i++) v[i] = rng.normal() * std;
  return v;
}

/**
 * Loads a Hugging Face checkpoint for sequence classification. Encoder tensors must all be present with the
 * config's shapes; pretraining heads are ignored; a missing or differently sized head is freshly initialised
 * from `seed`. Names may carry the family prefix (bert.*) or not (a bare encoder).
 */
export function loadPretrained(dir: string, options: { family?: Family | 'auto'; numLabels: number; seed: number }): LoadedModel {
  const config = readModelConfig(dir, options.family ?? 'auto');
  const file = path.join(dir, 'model.safetensors');
  const tensors = readCached(file);
  const model = new EncoderClassifier(config, options.numLabels);
  const notes: string[] = [];
  const prefix = `${config.family}.`;
  const lookup = (name: string) => tensors.get(name) ?? (name.startsWith(prefix) ? tensors.get(name.slice(prefix.length)) : undefined);
  const used = new Set<string>();
  const missing: string[] = [];
  const fresh: string[] = [];
  const rng = new Rng(options.seed);
  model.specs.forEach((spec, i) => {
    const t = lookup(spec.name);
    const key = tensors.has(spec.name) ? spec.name : spec.name.slice(prefix.length);
    if (t) used.add(key);
    const shapeOk = t && t.shape.length === spec.shape.length && t.shape.every((d, k) => d === spec.shape[k]);
    if (spec.group === 'head') {
      if (!t || !shapeOk) {
        fresh.push(t ? `${spec.name} (checkpoint shape [${t.shape}], need [${spec.shape}])` : spec.name);
        model.values[i] = initialValue(spec, rng);
        return;
      }
    } else if (!t) {
      missing.push(spec.name);
      return;
    } else if (!shapeOk) {
      throw new ModelError(file, `tensor ${spec.name} has shape [${t.shape}] but config.json implies [${spec.shape}]`, spec.name.includes('word_embeddings') ? `The vocabulary has ${config.vocabSize} entries in config.json; the checkpoint and its vocabulary do not match.` : 'Use the config.json that came with these weights.');
    }
    // Always a copy: the parsed tensors are shared by every trial of a sweep in this process.
    model.values[i] = spec.transposed ? transpose2d(t.data, spec.shape[0], spec.shape[1]) : Float32Array.from(t.data);
  });
  if (missing.length) {
    throw new ModelError(file, `missing encoder tensor${missing.length > 1 ? 's' : ''} ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`, 'The checkpoint does not match config.json (layers, family), or the file is incomplete.');
  }
  const ignored: string[] = [];
  const unexpected: string[] = [];
  for (const name of tensors.keys()) {
    if (used.has(name)) continue;
    if (PRETRAINING_HEADS.some((re) => re.test(name))) ignored.push(name);
    else unexpected.push(name);
  }
  if (unexpected.length) {
    throw new ModelError(file, `unexpected tensor${unexpected.length > 1 ? 's' : ''} ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ` and ${unexpected.length - 5} more` : ''}`, `config.json says ${config.numLayers} layers of a ${config.family} model; check that config and weights belong together.`);
  }
  if (ignored.length) notes.push(`ignored ${ignored.length} pretraining-head tensor${ignored.length > 1 ? 's' : ''} (${summarise(ignored)}), as Hugging Face does when fine-tuning`);
  if (fresh.length) notes.push(`initialised a fresh classification head (seed ${options.seed}): ${fresh.join(', ')}`);
  return { model, notes };
}

const summarise = (names: string[]) => [...new Set(names.map((n) => n.split('.').slice(0, 2).join('.')))].join(', ');

/** Writes a model directory Hugging Face (and childtune) can load: config.json, model.safetensors, tokenizer files. */
export function saveModel(model: EncoderClassifier, dir: string, options: { tokenizerFrom?: string; labels?: string[]; extraConfig?: Record<string, unknown> } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  model.specs.forEach((spec, i) => {
    const v = model.values[i];
    const [rows, cols] = internalShape(spec);
    tensors.set(spec.name, { shape: spec.shape, data: spec.transposed ? transpose2d(v, rows, cols) : v });
  });
  writeAtomic(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  const labels = options.labels ?? Array.from({ length: model.numLabels }, (_, i) => `LABEL_${i}`);
  writeAtomic(path.join(dir, 'config.json'), JSON.stringify({ ...configJson(model.config), num_labels: model.numLabels, id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])), label2id: Object.fromEntries(labels.map((l, i) => [l, i])), ...options.extraConfig }, null, 2) + '\n');
  if (options.tokenizerFrom) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(options.tokenizerFrom, f);
      if (fs.existsSync(src) && path.resolve(src) !== path.resolve(dir, f)) fs.copyFileSync(src, path.join(dir, f));
    }
  }
}

export function configJson(c: ModelConfig): Record<string, unknown> {
  const arch = { bert: 'BertForSequenceClassification', roberta: 'RobertaForSequenceClassification', electra: 'ElectraForSequenceClassification' }[c.family];
  return {
    architectures: [arch], model_type: c.family, vocab_size: c.vocabSize, hidden_size: c.hiddenSize, num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads,
    intermediate_size: c.intermediateSize, hidden_act: c.activation, hidden_dropout_prob: c.hiddenDropout, attention_probs_dropout_prob: c.attentionDropout,
    max_position_embeddings: c.maxPositions, type_vocab_size: c.typeVocabSize, initializer_range: 0.02, layer_norm_eps: c.layerNormEps, pad_token_id: c.padTokenId,
    ...(c.embeddingSize !== c.hiddenSize ? { embedding_size: c.embeddingSize } : {}),
  };
}

export { writeAtomic, WriteError } from './files.js';
