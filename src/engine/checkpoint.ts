import { candidateNames, diagnoseMissing, normaliseNames } from './checkpoint-names.js';
import { ModelError, readModelConfig, type Family } from './config.js';
import { isFloatDtype } from './dtype.js';
import { EncoderClassifier } from './model.js';
import { refuseSavedApart } from './model-files.js';
import { PRETRAINING_HEADS, sizeOf, type ParamSpec } from './params.js';
import type { ModelModifier } from './modules/modifier.js';
import { Rng, streamSeed } from './rng.js';
import { readCheckpoint } from './weights.js';

export interface LoadedModel {
  model: EncoderClassifier;
  /** What the loader did that a user should know (ignored heads, fresh classifier). */
  notes: string[];
  /** Head tensors the checkpoint lacked (or held in another shape), drawn fresh: the head is untrained. */
  freshHead: string[];
}

/** Copies [out, in] (checkpoint) into [in, out] (engine), or back. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** A parameter's initial values: `std` is the spread of the model's own 'normal' init (BERT's initializer_range). */
export function initialValue(spec: ParamSpec, rng: Rng, std = 0.02): Float32Array {
  const v = new Float32Array(sizeOf(spec));
  const init = spec.init;
  if (init === 'ones') v.fill(1);
  else if (typeof init === 'object' && 'constant' in init) v.fill(init.constant);
  else if (init === 'normal') for (let i = 0; i < v.length; i++) v[i] = rng.normal() * std;
  else if (typeof init === 'object' && 'normal' in init) {
    const bound = init.truncate ?? Infinity;
    for (let i = 0; i < v.length; i++) {
      let x = rng.normal() * init.normal;
      while (Math.abs(x) > bound) x = rng.normal() * init.normal;
      v[i] = x;
    }
  } else if (typeof init === 'object' && 'uniform' in init)
    for (let i = 0; i < v.length; i++) {
      const x = (2 * rng.next() - 1) * init.uniform;
      v[i] = init.mean === undefined ? x : x + init.mean;
    }
  else if (typeof init === 'object' && 'copyOf' in init)
    throw new Error(`${spec.name} copies ${init.copyOf}: initialise it with initStrategyParams`);
  else if (typeof init === 'object') throw new Error(`${spec.name}: rows of ${init.rowsOf} are copied by the model`);
  return v;
}

/** Salt of the streams that initialise modifiers' parameters, apart from the head's draws. */
const STRATEGY_INIT_STREAM = 0x5354;

/**
 * Initialises the parameters modifiers added (source 'strategy'), each from its own stream of `seed` and its index,
 * so adding one never changes another's values or the fresh head's.
 */
export function initStrategyParams(model: EncoderClassifier, seed: number) {
  model.specs.forEach((spec, i) => {
    if (spec.source !== 'strategy') return;
    const init = spec.init;
    const rng = new Rng(streamSeed(seed, STRATEGY_INIT_STREAM, i));
    if (typeof init === 'object' && 'copyOf' in init) model.values[i].set(model.values[model.indexOf(init.copyOf)]);
    else if (typeof init === 'object' && 'rowsOf' in init) model.values[i] = copiedRows(model, spec, init.rowsOf, rng);
    else model.values[i] = initialValue(spec, rng);
  });
}

/** [rows, width] copied from rows of `from` (same width), each row index drawn uniformly from `rng`. */
function copiedRows(model: EncoderClassifier, spec: ParamSpec, from: string, rng: Rng): Float32Array {
  const source = model.specs[model.indexOf(from)];
  const [rows, width] = spec.shape;
  if (source.transposed || source.shape.length !== 2 || source.shape[1] !== width)
    throw new Error(`${spec.name}: ${from} [${source.shape}] has no rows of width ${width} to copy`);
  const table = model.values[model.indexOf(from)];
  const v = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const row = rng.int(source.shape[0]);
    v.set(table.subarray(row * width, (row + 1) * width), r * width);
  }
  return v;
}

/**
 * Loads a Hugging Face checkpoint for sequence classification, as transformers would: whichever weight files the
 * directory has (model-files.ts), legacy names renamed and the base-model prefix added where the checkpoint lacks
 * it (checkpoint-names.ts). Encoder tensors must all be present with the config's shapes; pretraining heads are
 * ignored; a missing or differently sized head is freshly initialised from `seed`. Parameters the modifiers add are
 * not looked for in the checkpoint: they are initialised from `seed` too (initStrategyParams).
 */
export function loadPretrained(
  dir: string,
  options: {
    family?: Family | 'auto';
    numLabels: number;
    seed: number;
    modifiers?: readonly ModelModifier[];
    /** 'apply': the caller applies the strategy saved apart in `dir` (saved-strategy.ts); else such a model is refused. */
    savedApart?: 'apply';
  },
): LoadedModel {
  if (options.savedApart !== 'apply') refuseSavedApart(dir);
  const config = readModelConfig(dir, options.family ?? 'auto');
  const checkpoint = readCheckpoint(dir);
  const { tensors, renamed, prefixed } = normaliseNames(checkpoint.tensors, config.family, checkpoint.source);
  const model = new EncoderClassifier(config, options.numLabels, undefined, options.modifiers);
  const notes: string[] = [];
  const used = new Set<string>();
  const missing: string[] = [];
  const fresh: string[] = [];
  const rng = new Rng(options.seed);
  model.specs.forEach((spec, i) => {
    if (spec.source === 'strategy') return;
    const t = tensors.get(spec.name);
    if (t) used.add(spec.name);
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
      throw new ModelError(
        t.file,
        `tensor ${t.original} has shape [${t.shape}] but config.json implies [${spec.shape}]`,
        spec.name.includes('word_embeddings')
          ? `The vocabulary has ${config.vocabSize} entries in config.json; the checkpoint and its vocabulary do not match.`
          : 'Use the config.json that came with these weights.',
      );
    }
    if (!isFloatDtype(t.dtype))
      throw new ModelError(
        t.file,
        `tensor ${t.original} holds ${t.dtype} values; a weight is floating point (F32, F16, BF16, F64)`,
        'The file is not a model checkpoint, or it is quantised; save the model in float32, float16 or bfloat16.',
      );
    // Always a copy: the parsed tensors are shared by every trial of a sweep in this process.
    model.values[i] = spec.transposed ? transpose2d(t.data, spec.shape[0], spec.shape[1]) : Float32Array.from(t.data);
  });
  if (missing.length) {
    const tried = candidateNames(missing[0], config.family);
    const names = [...checkpoint.tensors.keys()];
    throw new ModelError(
      checkpoint.source,
      `missing encoder tensor${missing.length > 1 ? 's' : ''} ${listed(missing)} (for ${missing[0]} looked for ${tried.join(', ')}); the checkpoint holds ${names.length} tensor${names.length === 1 ? '' : 's'}: ${listed(names)}`,
      diagnoseMissing(names, config.family, config.numLayers),
    );
  }
  initStrategyParams(model, options.seed);
  const ignored: string[] = [];
  const unexpected: string[] = [];
  for (const [name, t] of tensors) {
    if (used.has(name)) continue;
    if (unusedByClassifier(name, config.family)) ignored.push(name);
    else unexpected.push(t.original);
  }
  if (unexpected.length) {
    throw new ModelError(
      checkpoint.source,
      `unexpected tensor${unexpected.length > 1 ? 's' : ''} ${listed(unexpected)}`,
      `config.json says ${config.numLayers} layers of a ${config.family} model; check that config and weights belong together.`,
    );
  }
  if (renamed)
    notes.push(
      `renamed ${renamed} legacy LayerNorm tensor${renamed > 1 ? 's' : ''} (gamma/beta to weight/bias), as transformers does`,
    );
  if (prefixed) notes.push(`the checkpoint is a bare encoder: read its tensors as ${config.family}.*`);
  if (ignored.length)
    notes.push(
      `ignored ${ignored.length} pretraining-head tensor${ignored.length > 1 ? 's' : ''} (${summarise(ignored)}), as Hugging Face does when fine-tuning`,
    );
  if (fresh.length) notes.push(`initialised a fresh classification head (seed ${options.seed}): ${fresh.join(', ')}`);
  return { model, notes, freshHead: fresh };
}

const listed = (names: string[]) =>
  `${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''}`;

/**
 * Tensors a sequence classifier does not use: pretraining heads, buffers older transformers saved
 * (position_ids, token_type_ids), and the pooler of RoBERTa/ELECTRA, whose classification heads pool on their own.
 */
const unusedByClassifier = (name: string, family: Family) =>
  PRETRAINING_HEADS.some((re) => re.test(name)) ||
  /embeddings\.(position_ids|token_type_ids)$/.test(name) ||
  (family !== 'bert' && name.startsWith(`${family}.pooler.`));

const summarise = (names: string[]) => [...new Set(names.map((n) => n.split('.').slice(0, 2).join('.')))].join(', ');
