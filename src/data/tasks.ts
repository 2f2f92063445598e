import { hubTaskSpec, nli2, nli3 } from './hub-layouts.js';
import type { BuiltinTask, DatasetBlock, Metric, TaskSpec } from './task-spec.js';

// The layers above take these two types from the catalogue.
export type { Metric, TaskSpec } from './task-spec.js';

/** A task of more than two classes: accuracy, and macro-F1, which a model that ignores a small class cannot hide from. */
const MULTI_CLASS: Metric[] = ['accuracy', 'macro_f1'];

export const TASKS: Record<BuiltinTask, TaskSpec> = {
  'glue/cola': {
    id: 'glue/cola',
    format: 'tsv',
    header: false,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: [3],
    label: 1,
    labels: ['0', '1'],
    metrics: ['mcc', 'accuracy'],
  },
  'glue/sst-2': {
    id: 'glue/sst-2',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['sentence'],
    label: 'label',
    labels: ['0', '1'],
    metrics: ['accuracy'],
  },
  'glue/mrpc': {
    id: 'glue/mrpc',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['#1 String', '#2 String'],
    label: 'Quality',
    labels: ['0', '1'],
    metrics: ['f1', 'accuracy'],
  },
  'glue/sts-b': {
    id: 'glue/sts-b',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['sentence1', 'sentence2'],
    label: 'score',
    labels: null,
    metrics: ['pearson', 'spearman'],
    scoreRange: [0, 5],
  },
  'glue/qqp': {
    id: 'glue/qqp',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['question1', 'question2'],
    label: 'is_duplicate',
    labels: ['0', '1'],
    metrics: ['f1', 'accuracy'],
  },
  'glue/mnli': {
    id: 'glue/mnli',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev_matched.tsv' },
    text: ['sentence1', 'sentence2'],
    label: 'gold_label',
    labels: nli3,
    metrics: MULTI_CLASS,
  },
  'glue/mnli-mm': {
    id: 'glue/mnli-mm',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev_mismatched.tsv' },
    text: ['sentence1', 'sentence2'],
    label: 'gold_label',
    labels: nli3,
    metrics: MULTI_CLASS,
  },
  'glue/qnli': {
    id: 'glue/qnli',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['question', 'sentence'],
    label: 'label',
    labels: nli2,
    metrics: ['accuracy'],
  },
  'glue/rte': {
    id: 'glue/rte',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['sentence1', 'sentence2'],
    label: 'label',
    labels: nli2,
    metrics: ['accuracy'],
  },
  'glue/wnli': {
    id: 'glue/wnli',
    format: 'tsv',
    header: true,
    files: { train: 'train.tsv', dev: 'dev.tsv' },
    text: ['sentence1', 'sentence2'],
    label: 'label',
    labels: ['0', '1'],
    metrics: ['accuracy'],
  },
  snli: {
    id: 'snli',
    format: 'jsonl',
    header: false,
    files: { train: 'snli_1.0_train.jsonl', dev: 'snli_1.0_dev.jsonl', test: 'snli_1.0_test.jsonl' },
    text: ['sentence1', 'sentence2'],
    label: 'gold_label',
    labels: nli3,
    metrics: MULTI_CLASS,
    unlabelled: ['-'],
  },
  scitail: {
    id: 'scitail',
    format: 'tsv',
    header: false,
    files: { train: 'scitail_1.0_train.tsv', dev: 'scitail_1.0_dev.tsv', test: 'scitail_1.0_test.tsv' },
    text: [0, 1],
    label: 2,
    labels: ['entails', 'neutral'],
    metrics: ['accuracy'],
  },
  sick: {
    id: 'sick',
    format: 'tsv',
    header: true,
    files: { train: 'SICK.txt', dev: 'SICK.txt', test: 'SICK.txt' },
    text: ['sentence_A', 'sentence_B'],
    label: 'entailment_label',
    labels: ['ENTAILMENT', 'NEUTRAL', 'CONTRADICTION'],
    metrics: MULTI_CLASS,
    splitColumn: { field: 'SemEval_set', values: { train: 'TRAIN', dev: 'TRIAL', test: 'TEST' } },
  },
};

/**
 * The task spec a dataset block describes: a built-in one, with any file overrides, or a custom one.
 * A built-in task with neither dir nor files reads the hub's files from the hub cache.
 */
export function taskSpecOf(dataset: DatasetBlock): TaskSpec {
  if (dataset.task !== 'custom') {
    const spec = TASKS[dataset.task];
    if (!dataset.dir && !dataset.files) return hubTaskSpec(spec);
    return { ...spec, files: { ...spec.files, ...withDev(dataset.files) } };
  }
  const regression = dataset.regression ?? false;
  return {
    id: 'custom',
    format: dataset.format,
    header: dataset.header ?? true,
    ...(dataset.file ? oneFile(dataset.file, dataset.split) : { files: withDev(dataset.files) }),
    text: (dataset.text_fields ?? ['text']) as TaskSpec['text'],
    label: dataset.label_field ?? 'label',
    labels: regression ? null : (dataset.labels ?? null),
    metrics: regression ? ['pearson', 'spearman'] : (dataset.labels?.length ?? 0) > 2 ? MULTI_CLASS : ['accuracy'],
  };
}

/** A custom data set in one file: every split it declares reads that file, keeping its own rows. */
function oneFile(file: string, split: DatasetBlock['split']): Pick<TaskSpec, 'files' | 'splitColumn' | 'splitRatio'> {
  const names = Object.keys(split?.values ?? split?.ratio ?? {});
  const files = withDev(Object.fromEntries(names.map((n) => [n, file])));
  if (split?.field !== undefined && split.values)
    return { files, splitColumn: { field: split.field, values: withDev(split.values) } };
  if (split?.ratio) return { files, splitRatio: { shares: split.ratio, seed: split.seed ?? 0 } };
  return { files };
}

/** `validation` (datasets' name) is the dev split unless dev is declared too. */
const withDev = (files: Record<string, string> | undefined) =>
  files?.validation && !files.dev ? { ...files, dev: files.validation } : { ...(files ?? {}) };

export const isRegression = (spec: TaskSpec) => spec.labels === null;

/**
 * Class names as the Hugging Face data sets publish them (GLUE's dataset card, snli, sick), for a saved model's
 * id2label, where the distributed files label classes 0/1 or in capitals. Index order matches `labels`.
 */
const HF_LABEL_NAMES: Partial<Record<TaskSpec['id'], string[]>> = {
  'glue/cola': ['unacceptable', 'acceptable'],
  'glue/sst-2': ['negative', 'positive'],
  'glue/mrpc': ['not_equivalent', 'equivalent'],
  'glue/qqp': ['not_duplicate', 'duplicate'],
  'glue/wnli': ['not_entailment', 'entailment'],
  sick: ['entailment', 'neutral', 'contradiction'],
};

/** The names of a dataset's classes for id2label; undefined for regression. */
export function labelNamesOf(dataset: DatasetBlock): string[] | undefined {
  const spec = taskSpecOf(dataset);
  if (!spec.labels) return undefined;
  return (dataset.task !== 'custom' && HF_LABEL_NAMES[dataset.task]) || spec.labels;
}
