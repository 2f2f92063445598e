import fs from 'node:fs';
import { METRIC_RANGES } from '../data/metrics.js';
import type { Metric } from '../data/task-spec.js';
import { writeJsonAtomic } from '../engine/files.js';
import type { FisherStats } from '../strategies/fisher.js';
import { RunError } from './errors.js';
import type { Evaluation } from './train.js';

/**
 * The files a run writes for other tools and later runs to read, each with a `version`: written through its
 * type, read back with a check. A file without a version predates versioning and reads as version 1; a newer
 * version than this build knows is refused, naming the file, rather than misread.
 */
export const ARTIFACT_VERSIONS = {
  'results.json': 1,
  'mask-stats.json': 1,
  'inputs.json': 1,
  /** A checkpoint's loop.json. */
  checkpoint: 1,
  /** A stage cache entry's done.json. */
  'cache-entry': 1,
} as const;

export type ArtifactKind = keyof typeof ARTIFACT_VERSIONS;

const HINT = 'Pass directories written by `childtune run` or `childtune sweep`; if this run was damaged, rerun it.';

export const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);

export const describeValue = (v: unknown) =>
  v === undefined
    ? 'nothing'
    : Array.isArray(v)
      ? 'a list'
      : v === null
        ? 'null'
        : `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;

/** Refuses a `version` this build cannot read (not a whole number, or newer than it writes). */
export function checkVersion(file: string, kind: ArtifactKind, value: Record<string, unknown>, hint = HINT): void {
  const v = value.version ?? 1;
  const known = ARTIFACT_VERSIONS[kind];
  if (!Number.isInteger(v) || (v as number) < 1)
    throw new RunError(
      `${file}: "version" must be a whole number of at least 1, found ${describeValue(value.version)}`,
      hint,
    );
  if ((v as number) > known)
    throw new RunError(
      `${file}: "version" is ${v}, newer than this childtune reads (${known})`,
      'Read it with the childtune version that wrote it, or upgrade childtune.',
    );
}

/** A JSON file as a plain value; invalid JSON names the file. */
export function readJsonFile(file: string, hint = HINT): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RunError(`${file}: not valid JSON (${(e as Error).message})`, hint);
  }
}

/** results.json: one finished trial. */
export interface ResultsFile {
  version: 1;
  trial: number;
  overrides: Record<string, unknown>;
  /** The overrides that came from sweep.per_strategy: the strategy's own settings (absent when none did). */
  strategy_settings?: string[];
  task: string;
  strategy: string;
  reserve_p: number | null;
  seed: number;
  backend: string;
  backend_skipped: { name: string; why: string }[];
  /** The GPU that ran the trial (webgpu): the adapter's vendor, architecture and description. */
  device?: { vendor: string; architecture: string; device: string; description: string; software: boolean };
  threads: number;
  /**
   * The CPU's matrix kernels (wasm backend): the kernel, its arithmetic (exact, fma or bf16) and why it was chosen;
   * `resumed_from` is the kernel of the checkpoint a resume continued where its arithmetic differed.
   */
  kernels?: { kernel: string; arithmetic: string; why: string; resumed_from?: string };
  /** A metric a run could not define (NaN) is written as null. */
  metrics: Record<string, number>;
  /** Classification runs since predictions were checked: the kept model's predictions per class on the evaluation split. */
  predicted_classes?: Record<string, number>;
  /** Every evaluation example got the same class. */
  single_class_prediction?: boolean;
  /** Always answering the training split's most frequent class, scored on the evaluation split. */
  majority_baseline?: { class: string; metrics: Record<string, number> };
  /** Evaluation examples by gold class (rows) and predicted class (columns), in `labels`' order. */
  confusion_matrix?: { labels: string[]; matrix: number[][] };
  /** Every evaluation: its epoch, step, scores on the evaluation split, and on the other splits evaluated. */
  epochs: Evaluation[];
  best_epoch: number;
  /** The evaluation whose model is kept and whose scores `metrics` are: the best on the evaluation split, or the last. */
  selected?: { step: number; epoch: number; by: 'best' | 'last'; split: string; metric: string };
  /** The kept evaluation's scores on the other splits of evaluation.splits (test beside dev), by split name. */
  split_metrics?: Record<string, Record<string, number>>;
  /** The step at which early stopping ended the training; null when it ran all its steps. */
  stopped_early_at_step?: number | null;
  steps: number;
  steps_per_epoch?: number;
  skipped_steps: number;
  final_loss: number;
  transfer: Record<string, Record<string, number>>;
  durations_s: Record<string, number>;
  resumed_from_step: number | null;
  hashes: { recipe: string; train: string; fisher: string | null };
  /** Parameters the strategy trained, and their share of the model's. */
  trainable_parameters: number;
  trainable_share: number;
  /** With Child-Tuning: the parameters its mask leaves updating (reserve_p of those in its scope), and their share. */
  effective_trainable_parameters?: number;
  effective_trainable_share?: number;
  /** Written by other tools' runs; read when present. */
  model?: string;
}

/** The class a run predicted for every evaluation example, or undefined when it predicted several (or did not record it). */
export function singleClassOf(r: Pick<ResultsFile, 'predicted_classes'>): string | undefined {
  const predicted = Object.entries(r.predicted_classes ?? {}).filter(([, n]) => n > 0);
  return predicted.length === 1 ? predicted[0][0] : undefined;
}

/** The note a run's summary lines carry when it predicted one class: its score is a constant answer's. */
export const singleClassNote = (r: Pick<ResultsFile, 'predicted_classes'>) => {
  const single = singleClassOf(r);
  return single === undefined
    ? ''
    : ` (warning: predicted '${single}' for every evaluation example, a constant answer's score)`;
};

export const writeResults = (file: string, results: Omit<ResultsFile, 'version'>) =>
  writeJsonAtomic(file, { version: ARTIFACT_VERSIONS['results.json'], ...results } satisfies ResultsFile);

/** What `childtune report` reads of a results.json: the fields it needs, each checked. */
export interface ResultsRead {
  task: string;
  strategy: string;
  reserve_p: number | null;
  seed: number;
  model: string | null;
  overrides: Record<string, unknown>;
  /** Which overrides are the strategy's own (sweep.per_strategy); empty for runs without any. */
  strategySettings: string[];
  metrics: Record<string, number>;
  transfer: Record<string, Record<string, number>>;
  /** The kept evaluation's scores on the other splits evaluated (results.json's split_metrics), by split name. */
  splits: Record<string, Record<string, number>>;
  /** Optimizer steps per epoch, null when results.json lacks them. */
  stepsPerEpoch: number | null;
  /** Share of the parameters that trained; null for runs that did not record it. */
  trainableShare: number | null;
  /** The one class the run predicted for every evaluation example; null when it predicted several, or did not record it. */
  singleClass: string | null;
  /** The majority-class baseline's metrics; null for runs that did not record it. */
  majority: Record<string, number> | null;
  /** Where the run trained: the backend and the GPU or thread count; null when results.json does not say. */
  ranOn: string | null;
  /** Gold class (rows) by predicted class (columns) on the evaluation split; null for runs that did not record it. */
  confusion: { labels: string[]; matrix: number[][] } | null;
}

/** A confusion matrix as results.json holds it: n class names and n rows of n counts. */
function isConfusion(x: unknown): x is { labels: string[]; matrix: number[][] } {
  if (!isObject(x) || !Array.isArray(x.labels) || !Array.isArray(x.matrix)) return false;
  const n = x.labels.length;
  return (
    x.labels.every((l) => typeof l === 'string') &&
    x.matrix.length === n &&
    x.matrix.every((row) => Array.isArray(row) && row.length === n && row.every((c) => Number.isInteger(c) && c >= 0))
  );
}

/** "webgpu on nvidia ampere (NVIDIA RTX A6000)" or "wasm, 2 threads", from results.json's fields. */
function ranOn(r: Record<string, unknown>): string | null {
  if (typeof r.backend !== 'string') return null;
  const d = r.device as { vendor?: string; architecture?: string; description?: string } | undefined;
  if (isObject(d))
    return `${r.backend} on ${[d.vendor, d.architecture].filter(Boolean).join(' ')}${d.description ? ` (${d.description})` : ''}`;
  const k = r.kernels as { kernel?: unknown; arithmetic?: unknown } | undefined;
  // Runs with fused or bf16 products agree with exact ones within rounding, not bit for bit: the label keeps them apart.
  const arithmetic =
    isObject(k) && typeof k.arithmetic === 'string' && k.arithmetic !== 'exact' ? `, ${k.arithmetic} products` : '';
  return typeof r.threads === 'number'
    ? `${r.backend}, ${r.threads} thread${r.threads === 1 ? '' : 's'}${arithmetic}`
    : r.backend;
}

/** A map of metric name to number; null (a metric the run could not define) is dropped. */
export function metricMap(file: string, field: string, value: unknown): Record<string, number> {
  if (!isObject(value))
    throw new RunError(`${file}: "${field}" must be an object of metric values, found ${describeValue(value)}`, HINT);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new RunError(`${file}: "${field}.${k}" must be a number, found ${describeValue(v)}`, HINT);
    const range = Object.hasOwn(METRIC_RANGES, k) ? METRIC_RANGES[k as Metric] : undefined;
    if (range && !(v >= range[0] && v <= range[1]))
      throw new RunError(
        `${file}: "${field}.${k}" is ${v}, outside ${k}'s range [${range[0]}, ${range[1]}]`,
        `childtune writes scores as fractions (0.573, not 57.3) and the report multiplies them by 100. ${HINT}`,
      );
    out[k] = v;
  }
  return out;
}

/** results.json, checked field by field: a foreign, damaged or newer file is named with the field that is wrong. */
export function readResults(file: string): ResultsRead {
  const r = readJsonFile(file);
  if (!isObject(r))
    throw new RunError(`${file}: not a childtune results file (expected an object, found ${describeValue(r)})`, HINT);
  const missing = ['task', 'strategy', 'seed', 'metrics'].filter((k) => !(k in r));
  if (missing.length)
    throw new RunError(
      `${file}: not a childtune results file (missing ${missing.map((k) => `"${k}"`).join(', ')})`,
      HINT,
    );
  checkVersion(file, 'results.json', r);
  const need = (ok: boolean, field: string, what: string) => {
    if (!ok) throw new RunError(`${file}: "${field}" must be ${what}, found ${describeValue(r[field])}`, HINT);
  };
  need(typeof r.task === 'string' && r.task.length > 0, 'task', 'a task name');
  need(typeof r.strategy === 'string' && r.strategy.length > 0, 'strategy', 'a strategy kind');
  need(Number.isInteger(r.seed), 'seed', 'an integer');
  // Written before seeds were bounded: such a run drew seed >>> 0's streams, so it would count as a seed it repeats.
  need(
    (r.seed as number) >= 0 && (r.seed as number) <= 0xffffffff,
    'seed',
    `a 32-bit seed, 0 to 4294967295 (the run drew the streams of seed ${(r.seed as number) >>> 0})`,
  );
  need(
    r.reserve_p === undefined || r.reserve_p === null || typeof r.reserve_p === 'number',
    'reserve_p',
    'a number or null',
  );
  need(r.overrides === undefined || isObject(r.overrides), 'overrides', 'an object');
  need(
    r.strategy_settings === undefined ||
      (Array.isArray(r.strategy_settings) && r.strategy_settings.every((k) => typeof k === 'string')),
    'strategy_settings',
    'a list of setting names',
  );
  need(r.transfer === undefined || isObject(r.transfer), 'transfer', 'an object');
  need(r.split_metrics === undefined || isObject(r.split_metrics), 'split_metrics', 'an object');
  need(r.steps_per_epoch === undefined || typeof r.steps_per_epoch === 'number', 'steps_per_epoch', 'a number');
  need(r.model === undefined || typeof r.model === 'string', 'model', 'a string');
  need(r.steps === undefined || typeof r.steps === 'number', 'steps', 'a number');
  need(r.epochs === undefined || Array.isArray(r.epochs), 'epochs', 'a list');
  need(r.trainable_share === undefined || typeof r.trainable_share === 'number', 'trainable_share', 'a number');
  need(
    r.predicted_classes === undefined ||
      (isObject(r.predicted_classes) && Object.values(r.predicted_classes).every((n) => Number.isInteger(n))),
    'predicted_classes',
    'an object of class counts',
  );
  need(
    r.majority_baseline === undefined ||
      (isObject(r.majority_baseline) && typeof r.majority_baseline.class === 'string'),
    'majority_baseline',
    'an object with a class and metrics',
  );
  need(
    r.confusion_matrix === undefined || isConfusion(r.confusion_matrix),
    'confusion_matrix',
    'an object with n class names ("labels") and n rows of n counts ("matrix")',
  );
  const transfer = Object.fromEntries(
    Object.entries((r.transfer ?? {}) as Record<string, unknown>).map(([k, v]) => [
      k,
      metricMap(file, `transfer.${k}`, v),
    ]),
  );
  const splits = Object.fromEntries(
    Object.entries((r.split_metrics ?? {}) as Record<string, unknown>).map(([k, v]) => [
      k,
      metricMap(file, `split_metrics.${k}`, v),
    ]),
  );
  const metrics = metricMap(file, 'metrics', r.metrics);
  if (!Object.keys(r.metrics as object).length)
    throw new RunError(`${file}: "metrics" is empty; a finished run records at least one metric`, HINT);
  const steps = r.steps as number | undefined,
    epochs = (r.epochs as unknown[] | undefined)?.length;
  return {
    task: r.task as string,
    strategy: r.strategy as string,
    reserve_p: (r.reserve_p as number | null | undefined) ?? null,
    seed: r.seed as number,
    model: (r.model as string | undefined) ?? null,
    overrides: (r.overrides ?? {}) as Record<string, unknown>,
    strategySettings: (r.strategy_settings ?? []) as string[],
    metrics,
    transfer,
    splits,
    // Runs that evaluated every N steps record it; older ones evaluated once per epoch.
    stepsPerEpoch: (r.steps_per_epoch as number | undefined) ?? (steps && epochs ? steps / epochs : null),
    trainableShare: (r.trainable_share as number | undefined) ?? null,
    singleClass: singleClassOf(r as Pick<ResultsFile, 'predicted_classes'>) ?? null,
    majority: isObject(r.majority_baseline)
      ? metricMap(file, 'majority_baseline.metrics', r.majority_baseline.metrics)
      : null,
    ranOn: ranOn(r),
    confusion: isConfusion(r.confusion_matrix) ? r.confusion_matrix : null,
  };
}

/** mask-stats.json: the kept fraction per tensor and layer, and for D the Fisher statistics. */
export interface MaskStatsFile {
  version: 1;
  strategy: string;
  reserve_p: number;
  per_tensor: Record<string, number>;
  per_layer: Record<string, number>;
  trainable_parameters: number;
  trainable_share: number;
  effective_trainable_parameters?: number;
  effective_trainable_share?: number;
  fisher?: FisherStats;
}

export const writeMaskStats = (file: string, stats: Omit<MaskStatsFile, 'version'>) =>
  writeJsonAtomic(file, { version: ARTIFACT_VERSIONS['mask-stats.json'], ...stats } satisfies MaskStatsFile);

export interface MaskStatsRead {
  per_layer: Record<string, number>;
  fisher?: { threshold: number; histogram: { log10_edges: number[]; counts: number[]; zeros: number } };
}

/** mask-stats.json as the report reads it, checked. */
export function readMaskStats(file: string): MaskStatsRead {
  const m = readJsonFile(file);
  if (!isObject(m) || !isObject(m.per_layer))
    throw new RunError(`${file}: not a childtune mask-stats file ("per_layer" missing)`, HINT);
  checkVersion(file, 'mask-stats.json', m);
  const perLayer = metricMap(file, 'per_layer', m.per_layer);
  const f = m.fisher;
  if (f === undefined) return { per_layer: perLayer };
  const h = isObject(f) ? f.histogram : undefined;
  const numbers = (x: unknown) => Array.isArray(x) && x.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (
    !isObject(f) ||
    typeof f.threshold !== 'number' ||
    !isObject(h) ||
    !numbers(h.log10_edges) ||
    !numbers(h.counts) ||
    typeof h.zeros !== 'number'
  ) {
    throw new RunError(`${file}: "fisher" must hold a threshold and a histogram (log10_edges, counts, zeros)`, HINT);
  }
  return {
    per_layer: perLayer,
    fisher: {
      threshold: f.threshold,
      histogram: { log10_edges: h.log10_edges as number[], counts: h.counts as number[], zeros: h.zeros },
    },
  };
}
