import path from 'node:path';
import { TASKS } from './tasks.js';
import type { BuiltinTask, TaskSpec } from './task-spec.js';

/**
 * What the GLUE benchmark's server (gluebenchmark.com) expects of a submission: one `<NAME>.tsv` per task,
 * `index<TAB>prediction` with the index of the task's test.tsv, and the label names of the task's
 * distributed files (RTE and QNLI entailment/not_entailment, MNLI entailment/neutral/contradiction, CoLA,
 * SST-2, MRPC, QQP and WNLI 0/1; STS-B a score in [0, 5]), which are the built-in tasks' labels here.
 */
interface GlueSubmission {
  /** The submission file's name without .tsv. */
  name: string;
  /** How the task's test.tsv differs from its train and dev files. */
  test?: Partial<TaskSpec>;
}

const SUBMISSIONS: Partial<Record<BuiltinTask, GlueSubmission>> = {
  // CoLA's train and dev files have no header, the label in column 1 and the sentence in column 3; its
  // test.tsv is `index sentence`, without labels.
  'glue/cola': { name: 'CoLA', test: { header: true, text: ['sentence'], label: 'label' } },
  'glue/sst-2': { name: 'SST-2' },
  'glue/mrpc': { name: 'MRPC' },
  'glue/sts-b': { name: 'STS-B' },
  'glue/qqp': { name: 'QQP' },
  'glue/mnli': { name: 'MNLI-m' },
  'glue/mnli-mm': { name: 'MNLI-mm' },
  'glue/qnli': { name: 'QNLI' },
  'glue/rte': { name: 'RTE' },
  'glue/wnli': { name: 'WNLI' },
};

/**
 * The submission file a task's model writes for a test file. An MNLI model answers three test sets: the
 * input's name decides (test_mismatched: MNLI-mm, the diagnostic set: AX, else the task's own).
 */
export function submissionName(task: string, input: string): string | undefined {
  const s = SUBMISSIONS[task as BuiltinTask];
  if (!s) return undefined;
  if (task !== 'glue/mnli' && task !== 'glue/mnli-mm') return s.name;
  const base = path.basename(input).toLowerCase();
  return /diagnostic|^ax\b/.test(base)
    ? 'AX'
    : /mismatched/.test(base)
      ? 'MNLI-mm'
      : /matched/.test(base)
        ? 'MNLI-m'
        : s.name;
}

/** The task's spec for reading its GLUE test.tsv. */
export const glueTestSpec = (spec: TaskSpec): TaskSpec => ({
  ...spec,
  ...SUBMISSIONS[spec.id as BuiltinTask]?.test,
});

/** One submission line's prediction: a class by the task's label name, an STS-B score clipped to [0, 5]. */
export function submissionValue(task: string, prediction: number): string {
  const labels = TASKS[task as BuiltinTask].labels;
  if (labels) return labels[prediction];
  const [lo, hi] = TASKS[task as BuiltinTask].scoreRange ?? [-Infinity, Infinity];
  return Math.min(hi, Math.max(lo, prediction)).toFixed(3);
}
