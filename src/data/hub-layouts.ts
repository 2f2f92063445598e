import path from 'node:path';
import { cachedSnapshot, HubError, snapshotFiles, type HubRef } from '../engine/hub/cache.js';
import { fetchRepo, type FetchOptions } from '../engine/hub/download.js';
import type { BuiltinTask, FileFormat, TaskSpec } from './task-spec.js';

export const nli3 = ['entailment', 'neutral', 'contradiction'];
export const nli2 = ['entailment', 'not_entailment'];

/**
 * A task as the hub publishes it: parquet files `{config}/{split}-NNNNN-of-NNNNN.parquet` (or, on the
 * parquet-converter branch, `{config}/{split}/NNNN.parquet`), with datasets' column names. Local exports
 * of the same data (parquet, jsonl, csv written by datasets) have the same columns.
 */
export interface HubLayout {
  repo: string;
  /** The branch holding parquet files, when it is not main. */
  revision?: string;
  config: string;
  /** Our split name to the hub's. */
  splits: Record<string, string>;
  text: [string] | [string, string];
  label: string;
  /** datasets' ClassLabel names in index order: integer labels index them (the order matches TaskSpec.labels). */
  classNames?: string[];
}

/** GLUE as nyu-mll/glue publishes it; test splits have no labels (-1). */
const glue = (
  config: string,
  text: HubLayout['text'],
  classNames: string[] | undefined,
  splits: Record<string, string>,
): HubLayout => ({
  repo: 'nyu-mll/glue',
  config,
  splits: { train: 'train', ...splits },
  text,
  label: 'label',
  classNames,
});

/** Where the hub publishes each built-in task. */
export const HUB_LAYOUTS: Record<BuiltinTask, HubLayout> = {
  'glue/cola': glue('cola', ['sentence'], ['unacceptable', 'acceptable'], { dev: 'validation' }),
  'glue/sst-2': glue('sst2', ['sentence'], ['negative', 'positive'], { dev: 'validation' }),
  'glue/mrpc': glue('mrpc', ['sentence1', 'sentence2'], ['not_equivalent', 'equivalent'], { dev: 'validation' }),
  'glue/sts-b': glue('stsb', ['sentence1', 'sentence2'], undefined, { dev: 'validation' }),
  'glue/qqp': glue('qqp', ['question1', 'question2'], ['not_duplicate', 'duplicate'], { dev: 'validation' }),
  'glue/mnli': glue('mnli', ['premise', 'hypothesis'], nli3, { dev: 'validation_matched' }),
  'glue/mnli-mm': glue('mnli', ['premise', 'hypothesis'], nli3, { dev: 'validation_mismatched' }),
  'glue/qnli': glue('qnli', ['question', 'sentence'], nli2, { dev: 'validation' }),
  'glue/rte': glue('rte', ['sentence1', 'sentence2'], nli2, { dev: 'validation' }),
  'glue/wnli': glue('wnli', ['sentence1', 'sentence2'], ['not_entailment', 'entailment'], { dev: 'validation' }),
  snli: {
    repo: 'stanfordnlp/snli',
    config: 'plain_text',
    splits: { train: 'train', dev: 'validation', test: 'test' },
    text: ['premise', 'hypothesis'],
    label: 'label',
    classNames: nli3,
  },
  scitail: {
    repo: 'allenai/scitail',
    config: 'tsv_format',
    splits: { train: 'train', dev: 'validation', test: 'test' },
    text: ['premise', 'hypothesis'],
    label: 'label',
  },
  sick: {
    repo: 'RobZamp/sick',
    revision: 'refs/convert/parquet',
    config: 'default',
    splits: { train: 'train', dev: 'validation', test: 'test' },
    text: ['sentence_A', 'sentence_B'],
    label: 'label',
    classNames: ['entailment', 'neutral', 'contradiction'],
  },
};

export const hubDatasetRef = (task: keyof typeof HUB_LAYOUTS): HubRef => ({
  type: 'dataset',
  repo: HUB_LAYOUTS[task].repo,
  revision: HUB_LAYOUTS[task].revision ?? 'main',
});

export const isBuiltinTask = (name: string): name is keyof typeof HUB_LAYOUTS => Object.hasOwn(HUB_LAYOUTS, name);

/** A split's parquet files in a repository listing, in shard order. */
export function splitShards(listing: readonly string[], layout: HubLayout, hubSplit: string): string[] {
  const prefix = `${layout.config}/`;
  const named = new RegExp(`^${escape(hubSplit)}(-\\d{5}-of-\\d{5})?\\.parquet$`);
  const converted = new RegExp(`^${escape(hubSplit)}/\\d{4}\\.parquet$`);
  return listing
    .filter(
      (f) => f.startsWith(prefix) && (named.test(f.slice(prefix.length)) || converted.test(f.slice(prefix.length))),
    )
    .sort();
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The files of every split a task uses; throws naming what the listing lacks. */
export function datasetFiles(listing: readonly string[], task: keyof typeof HUB_LAYOUTS): string[] {
  const layout = HUB_LAYOUTS[task];
  return Object.values(layout.splits).flatMap((hubSplit) => {
    const shards = splitShards(listing, layout, hubSplit);
    if (!shards.length)
      throw new HubError(
        `${layout.repo}${layout.revision ? `@${layout.revision}` : ''} has no parquet files for split '${hubSplit}' under ${layout.config}/`,
        'The repository layout changed; point dataset.dir at a local copy of the files instead.',
      );
    return shards;
  });
}

/**
 * The spec for a file in another format than the task's distribution (a datasets export: parquet, jsonl,
 * csv): the hub's column names, integer labels indexing datasets' ClassLabel names.
 */
export function exportSpec(spec: TaskSpec, format: FileFormat): TaskSpec {
  if (spec.id === 'custom') return spec;
  const layout = HUB_LAYOUTS[spec.id];
  return {
    ...spec,
    format,
    header: true,
    text: layout.text,
    label: layout.label,
    classNames: layout.classNames,
    splitColumn: undefined,
    unlabelled: undefined,
  };
}

/**
 * A built-in task named without a dir reads the hub's parquet files from the cache. `files` name the first
 * shard of each split when the cache has them; `fromHub.cached` says whether it does.
 */
export function hubTaskSpec(spec: TaskSpec, env: Readonly<Record<string, string | undefined>> = process.env): TaskSpec {
  if (spec.id === 'custom') return spec;
  const layout = HUB_LAYOUTS[spec.id];
  const snapshot = cachedSnapshot(hubDatasetRef(spec.id), env);
  const listing = snapshot ? snapshotFiles(snapshot) : [];
  const files: Record<string, string> = {};
  let complete = !!snapshot;
  for (const [split, hubSplit] of Object.entries(layout.splits)) {
    const first = splitShards(listing, layout, hubSplit)[0];
    if (!first) complete = false;
    files[split] = first && snapshot ? path.join(snapshot, first) : `${layout.config}/${hubSplit}.parquet`;
  }
  return { ...exportSpec(spec, 'parquet'), files, fromHub: { task: spec.id, repo: layout.repo, cached: complete } };
}

/** `childtune fetch glue/rte`: a built-in task's parquet files (every split it uses) into the hub cache. */
export const fetchDataset = (task: keyof typeof HUB_LAYOUTS, opts: FetchOptions = {}) =>
  fetchRepo(hubDatasetRef(task), (listing) => datasetFiles(listing, task), opts);
