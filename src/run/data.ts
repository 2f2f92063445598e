import fs from 'node:fs';
import { loadSplit, splitFile, type Example } from '../data/load.js';
import { subsampleIndices } from '../data/subsample.js';
import { taskSpecOf, type TaskSpec } from '../data/tasks.js';
import type { Encoding, Tokenizer } from '../engine/tokenizer.js';
import type { Dataset } from '../recipe/types.generated.js';
import { RunError } from './errors.js';

export interface PreparedSplit {
  spec: TaskSpec;
  file: string;
  encodings: Encoding[];
  labels: number[];
  /** Each example's 1-based line (parquet: row) in the file, for per-example outputs. */
  lines: number[];
  /** Indices into the full split (the subsample), or undefined when the whole split is used. */
  indices?: number[];
  skipped: number;
  unlabelled: number;
}

/**
 * Tokenized splits of this process: the trials of a sweep that share a dataset, split, subsample, tokenizer
 * and length share one tokenization. Keyed by the tokenizer object, so a new model's tokenizer never hits,
 * and by the data file's identity.
 */
const prepared = new WeakMap<Tokenizer, Map<string, PreparedSplit>>();

/** Loads, optionally subsamples, and tokenizes one split (truncated to maxLength, padded per batch later). */
export function prepareSplit(
  dataset: Dataset,
  split: string,
  tokenizer: Tokenizer,
  maxLength: number,
  subsample: boolean,
): PreparedSplit {
  const byTokenizer = prepared.get(tokenizer) ?? new Map<string, PreparedSplit>();
  prepared.set(tokenizer, byTokenizer);
  // The file's identity too: a file edited between two trials of this process is read again.
  const stat = fs.statSync(splitFile(taskSpecOf(dataset), dataset.dir, split), { throwIfNoEntry: false });
  const key = JSON.stringify([
    dataset,
    split,
    maxLength,
    subsample,
    stat && [stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs],
  ]);
  const hit = byTokenizer.get(key);
  if (hit) return hit;
  const result = tokenizeSplit(dataset, split, tokenizer, maxLength, subsample);
  byTokenizer.set(key, result);
  return result;
}

/** A split as read from its file (the load-dataset stage): every usable example, none yet dropped or tokenized. */
export interface LoadedExamples {
  spec: TaskSpec;
  file: string;
  examples: Example[];
  /** Indices into the full split, when a subsample stage picked them. */
  indices?: number[];
  skipped: number;
  unlabelled: number;
}

export function loadExamples(dataset: Dataset, split: string): LoadedExamples {
  const spec = taskSpecOf(dataset);
  const loaded = loadSplit(spec, dataset.dir, split, dataset.on_bad_row);
  if (loaded.examples.length === 0)
    throw new RunError(
      `${loaded.file}: split '${split}' has no examples${loaded.empty ? ' (the file is empty)' : loaded.skipped.count ? ` after skipping ${loaded.skipped.count} bad rows` : ''}`,
      'Check the file and the dataset settings.',
    );
  return {
    spec,
    file: loaded.file,
    examples: loaded.examples,
    skipped: loaded.skipped.count,
    unlabelled: loaded.unlabelled,
  };
}

/** The subsample stage: `size` examples drawn with `seed` (per class in proportion when stratified). */
export function subsampleExamples(
  data: LoadedExamples,
  s: { size: number; seed: number; stratified: boolean },
): LoadedExamples {
  if (s.size > data.examples.length)
    throw new RunError(
      `${data.file}: subsample size ${s.size} is larger than the split (${data.examples.length} examples)`,
      `Use dataset.subsample.size of at most ${data.examples.length}.`,
    );
  const indices = subsampleIndices(data.examples, s.size, s.seed, s.stratified);
  return { ...data, indices, examples: indices.map((i) => data.examples[i]) };
}

/** The tokenize stage: each example truncated to maxLength (padded per batch later). */
export function tokenizeExamples(data: LoadedExamples, tokenizer: Tokenizer, maxLength: number): PreparedSplit {
  const { examples, ...rest } = data;
  return {
    ...rest,
    encodings: examples.map((e) => tokenizer.encode(e.textA, e.textB, maxLength)),
    labels: examples.map((e) => e.label),
    lines: examples.map((e) => e.line),
  };
}

function tokenizeSplit(
  dataset: Dataset,
  split: string,
  tokenizer: Tokenizer,
  maxLength: number,
  subsample: boolean,
): PreparedSplit {
  const loaded = loadExamples(dataset, split);
  const s = dataset.subsample;
  const picked =
    subsample && s
      ? subsampleExamples(loaded, {
          size: s.size,
          seed: s.seed,
          stratified: s.stratified && loaded.spec.labels !== null,
        })
      : loaded;
  return tokenizeExamples(picked, tokenizer, maxLength);
}
