import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { volatile } from '../../plan/compiler.js';
import type { Recipe } from '../../recipe/types.generated.js';
import { isObject, metricMap, readMaskStats, readResults } from '../artifacts.js';
import { RunError } from '../errors.js';

/**
 * Finding and reading finished runs for `childtune report` and `childtune compare`. Every file is checked
 * as it is read, so a foreign or damaged file is reported by name with what is wrong, never as a crash.
 */
export interface CurvePoint {
  step: number;
  epoch?: number;
  loss?: number;
  metrics?: Record<string, number>;
}

export interface FisherSummary {
  threshold: number;
  histogram: { log10_edges: number[]; counts: number[]; zeros: number };
}

export interface RunRecord {
  dir: string;
  task: string;
  strategy: string;
  reserve_p: number | null;
  seed: number;
  /** The pretrained model the run started from (its path as the recipe resolved it), when known. */
  model: string | null;
  /** The sweep's overrides for this trial, without the seed: the swept settings. */
  swept: Record<string, unknown>;
  /** The swept settings that are the strategy's own (sweep.per_strategy): a row is compared with the baseline without them. */
  strategySettings: string[];
  /** The run-defining recipe fields without the seed (from recipe.resolved.yaml), when the run has one. */
  config: Record<string, unknown> | null;
  /** Final metrics; a metric a run could not define (written as null) is absent. */
  metrics: Record<string, number>;
  transfer: Record<string, Record<string, number>>;
  /** The kept evaluation's scores on other splits (evaluation.splits: test beside dev); absent in hand-made records. */
  splits?: Record<string, Record<string, number>>;
  /** Optimizer steps per epoch, to put logged steps on an epoch axis; null when results.json lacks them. */
  stepsPerEpoch: number | null;
  /** Share of the parameters that trained (results.json's trainable_share); null for runs that did not record it. */
  trainableShare: number | null;
  /** The one class the run predicted for every evaluation example; null when several (or not recorded). */
  singleClass: string | null;
  /** What always answering the training split's majority class scores; null for runs that did not record it. */
  majority: Record<string, number> | null;
  /** Gold class (rows) by predicted class (columns) on the evaluation split; absent or null when not recorded. */
  confusion?: { labels: string[]; matrix: number[][] } | null;
  /** Where the run trained (backend, GPU or threads); absent or null when results.json does not say. */
  ranOn?: string | null;
  /** Loss and evaluation curves from metrics.jsonl. */
  curve: CurvePoint[];
  mask?: { per_layer: Record<string, number>; fisher?: FisherSummary };
}

/** What collecting found besides the runs: the same run reached twice is read once and said so here. */
export interface Collected {
  runs: RunRecord[];
  notes: string[];
}

const SKIPPED = new Set(['prepare', 'checkpoints', 'model', 'figures']);

/** Every finished run under the given directories (a run directory itself, or a sweep or parent directory). */
export const collectRuns = (dirs: string[]): RunRecord[] => findRuns(dirs).runs;

/** collectRuns, with a note for each run reached twice. */
export function findRuns(dirs: string[]): Collected {
  const found = new Map<string, string>();
  const notes: string[] = [];
  const walk = (d: string, depth: number) => {
    if (fs.existsSync(path.join(d, 'results.json'))) {
      const real = fs.realpathSync(d);
      const first = found.get(real);
      if (first === undefined) found.set(real, d);
      else notes.push(`${d} is the same run as ${first} (reached through two of the given directories); counted once`);
      return;
    }
    if (depth === 0) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.isDirectory() && !SKIPPED.has(e.name)) walk(path.join(d, e.name), depth - 1);
    }
  };
  for (const d of dirs) {
    if (!fs.existsSync(d) || !fs.statSync(d).isDirectory())
      throw new RunError(`${d} is not a directory`, 'Pass run or sweep directories.');
    walk(d, 3);
  }
  if (!found.size)
    throw new RunError(
      `no finished runs (results.json) under ${dirs.join(', ')}`,
      'Pass run or sweep directories whose trials have finished.',
    );
  return { runs: [...found.values()].map(readRun), notes };
}

const HINT = 'Pass directories written by `childtune run` or `childtune sweep`; if this run was damaged, rerun it.';

/** The resolved recipe's run-defining fields, without the seed; null when the run has no recipe.resolved.yaml. */
function readConfig(file: string): { config: Record<string, unknown>; recipe: Recipe } | null {
  if (!fs.existsSync(file)) return null;
  let recipe: Recipe;
  try {
    recipe = parse(fs.readFileSync(file, 'utf8')) as Recipe;
  } catch (e) {
    throw new RunError(`${file}: not valid YAML (${(e as Error).message.split('\n')[0]})`, HINT);
  }
  if (
    !isObject(recipe) ||
    !isObject(recipe.model) ||
    !isObject(recipe.dataset) ||
    !isObject(recipe.training) ||
    !isObject(recipe.runtime)
  ) {
    throw new RunError(`${file}: not a resolved childtune recipe (model, dataset, training or runtime missing)`, HINT);
  }
  const { training, ...rest } = volatile(recipe);
  const { seed: _seed, ...trainingRest } = training;
  return { config: { ...rest, training: trainingRest }, recipe };
}

function readRun(dir: string): RunRecord {
  const results = readResults(path.join(dir, 'results.json'));
  const resolved = readConfig(path.join(dir, 'recipe.resolved.yaml'));
  const metricsFile = path.join(dir, 'metrics.jsonl');
  const curve = fs.existsSync(metricsFile) ? readJsonl(metricsFile) : [];
  const maskFile = path.join(dir, 'mask-stats.json');
  const { overrides, ...rest } = results;
  const { 'training.seed': _seed, ...swept } = overrides;
  return {
    dir,
    ...rest,
    swept,
    task: columnOf(results.task, resolved?.recipe),
    model: results.model ?? resolved?.recipe.model.path ?? null,
    config: resolved?.config ?? null,
    curve,
    mask: fs.existsSync(maskFile) ? readMaskStats(maskFile) : undefined,
  };
}

/** Custom data sets all share the task name `custom`; their column names the data set as well. */
function columnOf(task: string, recipe: Recipe | undefined): string {
  if (task !== 'custom' || !recipe) return task;
  const d = recipe.dataset;
  const source = d.dir ?? d.file ?? d.files?.[d.train_split ?? 'train'];
  return source ? `custom (${path.basename(source).replace(/\.(tsv|csv|jsonl)$/, '')})` : task;
}

/**
 * metrics.jsonl entries of a finished run. A malformed line is an error naming it, the last one too: a run
 * writes results.json after its last entry, so a last line cut short is damage, and leaving it out would drop
 * the final evaluation from the curves without a word.
 */
function readJsonl(file: string): CurvePoint[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const out: CurvePoint[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    let e: unknown;
    try {
      e = JSON.parse(lines[i]);
    } catch {
      throw new RunError(
        `${file}:${i + 1}: ${lines.slice(i + 1).some((l) => l.trim()) ? 'not a JSON line' : 'the last line is cut short'}`,
        'The file was damaged (a copy cut short, or edited); copy it again from the run, or rerun the trial.',
      );
    }
    if (!isObject(e) || typeof e.step !== 'number')
      throw new RunError(
        `${file}:${i + 1}: not a metrics entry (no "step")`,
        'The file was edited or damaged; rerun the trial.',
      );
    out.push({
      step: e.step,
      epoch: typeof e.epoch === 'number' ? e.epoch : undefined,
      loss: typeof e.loss === 'number' ? e.loss : undefined,
      metrics: e.metrics === undefined ? undefined : metricMap(`${file}:${i + 1}`, 'metrics', e.metrics),
    });
  }
  return out;
}
