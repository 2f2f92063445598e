import path from 'node:path';
import { TASKS } from '../../data/tasks.js';
import { canonicalJson } from '../../plan/hash.js';
import { diffPaths } from '../diff.js';
import type { RunRecord } from './collect.js';

/**
 * The one grouping every part of the report uses (table, figures, significance): runs are grouped by model,
 * task, strategy and every swept setting, and never merged when they differ in anything else but the seed
 * (such runs are split, their row naming the fields that differ). Within a group each seed counts once;
 * a seed reached by several runs is flagged.
 */
export interface Row {
  /** Stable identity of the row across columns. */
  key: string;
  /** What a reader sees: strategy, then the settings that tell rows apart, then the model when there are several. */
  label: string;
  /** The strategy kind (vanilla, child-tuning-f, ...), for choosing the baseline. */
  strategy: string;
  /** The strategy with its reserve_p. */
  strategyLabel: string;
  model: string | null;
  /** Swept settings and fields that split otherwise equal runs, as dotted path to displayed value. */
  settings: Record<string, string>;
  /** The settings that are the strategy's own (sweep.per_strategy), left out when the row looks for its baseline. */
  own: string[];
}

export interface SeedValue {
  seed: number;
  value: number;
}

export interface Group {
  row: Row;
  column: string;
  metric: string;
  /** Every run of the group. */
  runs: RunRecord[];
  /** One value per seed, ascending by seed (the mean of its runs when a seed was run more than once). */
  values: SeedValue[];
}

export interface Grouping {
  rows: Row[];
  columns: string[];
  groups: Group[];
  /** Duplicate seeds and split groups, each said once. */
  warnings: string[];
}

export const strategyLabel = (r: Pick<RunRecord, 'strategy' | 'reserve_p'>) =>
  r.reserve_p !== null && r.strategy !== 'vanilla' ? `${r.strategy} (p=${r.reserve_p})` : r.strategy;

/** The column of a task's scores on another split its runs evaluated (evaluation.splits: test beside dev). */
export const splitColumn = (task: string, split: string) => `${task} [${split}]`;

/**
 * Whether a column scores the run's own evaluation split, where its majority baseline and predicted classes apply:
 * not a transfer target (`task → target`) nor another split (`task [test]`).
 */
export const scoresEvalSplit = (column: string) => !column.includes(' → ') && !column.endsWith(']');

/** The metric the paper reports for a task: the first of its metrics. */
export const primaryMetric = (task: string, metrics: Record<string, number>) =>
  (TASKS as Record<string, { metrics: string[] }>)[task]?.metrics[0] ?? Object.keys(metrics)[0];

/** Sweep fields already shown by the strategy label. */
const SHOWN_BY_STRATEGY = new Set(['strategy.kind', 'strategy.reserve_p']);

const display = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * A swept block (the paper recipes sweep whole `strategy` blocks) as one dotted setting per leaf, so that rows
 * read `lora strategy.r=8` rather than JSON, and `strategy.*` settings are known as the strategy's own.
 */
function flatten(key: string, v: unknown, out: [string, unknown][] = []): [string, unknown][] {
  if (v && typeof v === 'object' && !Array.isArray(v))
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) flatten(`${key}.${k}`, x, out);
  else out.push([key, v]);
  return out;
}

function at(config: Record<string, unknown> | null, dotted: string): unknown {
  if (dotted === '(root)') return config === null ? 'not recorded' : 'recorded';
  let x: unknown = config;
  for (const k of dotted.split('.')) x = x && typeof x === 'object' ? (x as Record<string, unknown>)[k] : undefined;
  return x;
}

/** Settings per run: the swept ones, plus the fields in which runs of one (model, task, strategy, sweep point) differ. */
function settingsOf(runs: RunRecord[], warnings: string[]): Map<RunRecord, Record<string, string>> {
  const out = new Map<RunRecord, Record<string, string>>();
  const base = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const swept = Object.fromEntries(
      Object.entries(r.swept)
        .flatMap(([k, v]) => flatten(k, v))
        .filter(([k]) => !SHOWN_BY_STRATEGY.has(k))
        .map(([k, v]) => [k, display(v)]),
    );
    out.set(r, swept);
    const key = canonicalJson([r.model, r.task, strategyLabel(r), swept]);
    base.set(key, [...(base.get(key) ?? []), r]);
  }
  for (const group of base.values()) {
    const configs = [...new Map(group.map((r) => [canonicalJson(r.config), r.config])).values()];
    if (configs.length < 2) continue;
    const fields = [...new Set(configs.slice(1).flatMap((c) => diffPaths(configs[0], c)))].sort();
    for (const r of group) for (const f of fields) out.get(r)![f] = display(at(r.config, f) ?? 'unset');
    warnings.push(
      `${group.length} ${strategyLabel(group[0])} runs on ${group[0].task} differ in ${fields.join(', ')} (not swept); they are kept apart as separate rows`,
    );
  }
  return out;
}

/** A short name per model: the folder's name, or the whole path where two models share a folder name. */
function modelNames(runs: RunRecord[]): Map<string | null, string> {
  const models = [...new Set(runs.map((r) => r.model))];
  const base = (m: string | null) => (m === null ? 'unknown model' : path.basename(m));
  return new Map(
    models.map((m) => [m, models.filter((o) => base(o) === base(m)).length > 1 ? (m ?? 'unknown model') : base(m)]),
  );
}

/** Row order in tables and legends: by model, the baseline first, then by name. */
function rowOrder(baseline: string, names: Map<string | null, string>) {
  return (a: Row, b: Row) =>
    names.get(a.model)!.localeCompare(names.get(b.model)!) ||
    Number(b.strategy === baseline) - Number(a.strategy === baseline) ||
    a.label.localeCompare(b.label);
}

export function groupRuns(runs: RunRecord[], baseline = 'vanilla'): Grouping {
  const warnings: string[] = [];
  const settings = settingsOf(runs, warnings);
  const names = modelNames(runs);
  const severalModels = names.size > 1;
  const rows = new Map<string, Row>();
  const rowOf = (r: RunRecord): Row => {
    const s = settings.get(r)!;
    const key = canonicalJson([r.model, strategyLabel(r), s]);
    let row = rows.get(key);
    if (!row) {
      const parts = [
        strategyLabel(r),
        ...Object.entries(s)
          .sort()
          .map(([k, v]) => `${k}=${v}`),
        ...(severalModels ? [`[${names.get(r.model)}]`] : []),
      ];
      row = {
        key,
        label: parts.join(' '),
        strategy: r.strategy,
        strategyLabel: strategyLabel(r),
        model: r.model,
        settings: s,
        own: Object.keys(s).filter((k) => r.strategySettings.some((x) => k === x || k.startsWith(`${x}.`))),
      };
      rows.set(key, row);
    }
    return row;
  };

  const cells = new Map<
    string,
    { row: Row; column: string; metric: string; entries: { run: RunRecord; value: number }[] }
  >();
  const add = (run: RunRecord, column: string, metrics: Record<string, number>, metric: string | undefined) => {
    if (metric === undefined || metrics[metric] === undefined) return;
    const row = rowOf(run);
    const key = canonicalJson([row.key, column]);
    const cell = cells.get(key) ?? { row, column, metric, entries: [] };
    cells.set(key, cell);
    cell.entries.push({ run, value: metrics[metric] });
  };
  for (const r of runs) {
    add(r, r.task, r.metrics, primaryMetric(r.task, r.metrics));
    for (const [split, metrics] of Object.entries(r.splits ?? {}))
      add(r, splitColumn(r.task, split), metrics, primaryMetric(r.task, metrics));
    for (const [target, metrics] of Object.entries(r.transfer))
      add(r, `${r.task} → ${target}`, metrics, Object.keys(metrics)[0]);
  }

  const groups: Group[] = [];
  const flagged = new Set<string>();
  for (const c of cells.values()) {
    const bySeed = new Map<number, { run: RunRecord; value: number }[]>();
    for (const e of c.entries) bySeed.set(e.run.seed, [...(bySeed.get(e.run.seed) ?? []), e]);
    const seeds = [...bySeed].sort(([a], [b]) => a - b);
    const repeated = seeds.filter(([, list]) => list.length > 1);
    if (repeated.length && !flagged.has(c.row.key)) {
      // Said once per row (its transfer columns share the same runs).
      flagged.add(c.row.key);
      const same = repeated.every(([, list]) => list.every((e) => e.value === list[0].value));
      warnings.push(
        `${c.row.label} on ${c.column}: seed${repeated.length > 1 ? 's' : ''} ${repeated.map(([s]) => s).join(', ')} ran more than once, with ${same ? 'identical' : 'different'} results (${repeated.map(([s, list]) => `seed ${s}: ${list.map((e) => e.run.dir).join(', ')}`).join('; ')}); each seed counts once, as the mean of its runs`,
      );
    }
    const single = c.entries.filter((e) => e.run.singleClass !== null && scoresEvalSplit(c.column));
    if (single.length)
      warnings.push(
        `${c.row.label} on ${c.column}: ${single.length} of ${c.entries.length} runs predicted one class for every evaluation example (${[...new Set(single.map((e) => `'${e.run.singleClass}'`))].join(', ')}): their scores are a constant answer's, not a learned one (${single.map((e) => e.run.dir).join(', ')})`,
      );
    const values = seeds.map(([seed, list]) => ({ seed, value: list.reduce((a, e) => a + e.value, 0) / list.length }));
    groups.push({ row: c.row, column: c.column, metric: c.metric, runs: c.entries.map((e) => e.run), values });
  }
  return {
    rows: [...rows.values()].sort(rowOrder(baseline, names)),
    columns: [...new Set(groups.map((g) => g.column))].sort(),
    groups,
    warnings,
  };
}

/** The group of one row and column, if it has runs. */
export const groupAt = (g: Grouping, row: Row, column: string) =>
  g.groups.find((x) => x.row.key === row.key && x.column === column);
