import fs from 'node:fs';
import { loadSplit, splitFile } from '../data/load.js';
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
export function prepareSplit(dataset: Dataset, split: string, tokenizer: Tokenizer, maxLength: number, subsample: boolean): PreparedSplit {
  const byTokenizer = prepared.get(tokenizer) ?? new Map<string, PreparedSplit>();
  prepared.set(tokenizer, byTokenizer);
  // The file's identity too: a file edited between two trials of this process is read again.
  const stat = fs.statSync(splitFile(taskSpecOf(dataset), dataset.dir, split), { throwIfNoEntry: false });
  const key = JSON.stringify([dataset, split, maxLength, subsample, stat && [stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs]]);
  const hit = byTokenizer.get(key);
  if (hit) return hit;
  const result = tokenizeSplit(dataset, split, tokenizer, maxLength, subsample);
  byTokenizer.set(key, result);
  return result;
}

function tokenizeSplit(dataset: Dataset, split: string, tokenizer: Tokenizer, maxLength: number, subsample: boolean): PreparedSplit {
  const spec = taskSpecOf(dataset);
  const loaded = loadSplit(spec, dataset.dir, split, dataset.on_bad_row);
  if (loaded.examples.length === 0) throw new RunError(`${loaded.file}: split '${split}' has no examples${loaded.empty ? ' (the file is empty)' : loaded.skipped.count ? ` after skipping ${loaded.skipped.count} bad rows` : ''}`, 'Check the file and the dataset settings.');
  let examples = loaded.examples;
  let indices: number[] | undefined;
  if (subsample && dataset.subsample) {
    const s = dataset.subsample;
    if (s.size > examples.length) throw new RunError(`${loaded.file}: subsample size ${s.size} is larger than the split (${examples.length} examples)`, `Use dataset.subsample.size of at most ${examples.length}.`);
    indices = subsampleIndices(examples, s.size, s.seed, s.stratified && spec.labels !== null);
    examples = indices.map((i) => examples[i]);
  }
  return {
    spec, file: loaded.file, indices,
    encodings: examples.map((e) => tokenizer.encode(e.textA, e.textB, maxLength)),
    labels: examples.map((e) => e.label),
    skipped: loaded.skipped.count,
    unlabelled: loaded.unlabelled,
  };
}
