import tQuantile from '@stdlib/stats-base-dists-t-quantile';
import { groupAt, type Grouping, type Row } from './group.js';

/**
 * Is a strategy's gap to the baseline more than seed noise? For each task column, each row against its
 * baseline row (same model and settings, baseline strategy): the difference of means with a 95% t interval,
 * paired by seed when both rows ran exactly the same seeds, Welch's otherwise.
 */
export interface Difference {
  row: string;
  baseline: string;
  column: string;
  method: 'paired t' | 'Welch t';
  n: number;
  baselineN: number;
  /** Row mean minus baseline mean (paired: mean of the per-seed differences, the same number). */
  diff: number;
  /** The 95% interval; null when it is undefined (fewer than two seeds on a side, or no spread at all). */
  lo: number | null;
  hi: number | null;
  df: number | null;
  /** The interval excludes zero. */
  significant: boolean;
  /** Why the interval is undefined, or that it rests on fewer than five seeds. */
  note?: string;
  /** The row and its baseline trained at different learning rates: part of the difference is the learning rate. */
  lr_note?: string;
}

export const LEVEL = 0.95;
export const MIN_SEEDS = 5;

export function meanOf(xs: number[]): number {
  return xs.reduce((a, x) => a + x, 0) / xs.length;
}

/** Sample variance (n - 1 in the denominator). */
export function varianceOf(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = meanOf(xs);
  return xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1);
}

/** A two-sided interval at LEVEL from an estimate, its standard error and degrees of freedom. */
function interval(diff: number, se: number, df: number) {
  const half = tQuantile(1 - (1 - LEVEL) / 2, df) * se;
  return { lo: diff - half, hi: diff + half, df };
}

export function pairedDifference(x: { seed: number; value: number }[], y: { seed: number; value: number }[]) {
  const byseed = new Map(y.map((v) => [v.seed, v.value]));
  const d = x.map((v) => v.value - byseed.get(v.seed)!);
  const diff = meanOf(d);
  if (d.length < 2 || varianceOf(d) === 0) return { diff, lo: null, hi: null, df: null };
  return { diff, ...interval(diff, Math.sqrt(varianceOf(d) / d.length), d.length - 1) };
}

export function welchDifference(x: number[], y: number[]) {
  const diff = meanOf(x) - meanOf(y);
  if (x.length < 2 || y.length < 2) return { diff, lo: null, hi: null, df: null };
  const a = varianceOf(x) / x.length,
    b = varianceOf(y) / y.length;
  if (a + b === 0) return { diff, lo: null, hi: null, df: null };
  // Welch–Satterthwaite degrees of freedom.
  const df = (a + b) ** 2 / (a ** 2 / (x.length - 1) + b ** 2 / (y.length - 1));
  return { diff, ...interval(diff, Math.sqrt(a + b), df) };
}

/** Settings that are not the strategy's own (its options, its per_strategy settings): the ones a row and its baseline must share. */
const shared = (row: Row) =>
  Object.entries(row.settings).filter(([k]) => !k.startsWith('strategy.') && !row.own.includes(k));

const sameSettings = (a: [string, string][], b: Record<string, string>, bCount: number) =>
  a.length === bCount && a.every(([k, v]) => b[k] === v);

/**
 * The baseline row for a row: the baseline strategy with the same model and the same settings that are not a
 * strategy's own. Where several such rows differ in the baseline's own settings (a per_strategy grid of its learning
 * rate), the one at exactly the row's settings, else none: the pairing is never a guess.
 */
export function baselineRow(rows: Row[], row: Row, baseline: string): Row | undefined {
  const mine = shared(row);
  const candidates = rows.filter(
    (b) => b.strategy === baseline && b.model === row.model && sameSettings(mine, b.settings, shared(b).length),
  );
  if (candidates.length < 2) return candidates[0];
  const all = Object.entries(row.settings).filter(([k]) => !k.startsWith('strategy.'));
  return candidates.find((b) =>
    sameSettings(all, b.settings, Object.keys(b.settings).filter((k) => !k.startsWith('strategy.')).length),
  );
}

/** The learning rates a group's runs trained at (from recipe.resolved.yaml), ascending. */
function learningRates(runs: { config: Record<string, unknown> | null }[]): number[] {
  const lr = (c: Record<string, unknown> | null) =>
    ((c?.training as { optimizer?: { lr?: unknown } } | undefined)?.optimizer?.lr as number | undefined) ?? NaN;
  return [...new Set(runs.map((r) => lr(r.config)).filter((x) => Number.isFinite(x)))].sort((a, b) => a - b);
}

export function differences(g: Grouping, baseline: string): Difference[] {
  const out: Difference[] = [];
  for (const row of g.rows) {
    if (row.strategy === baseline) continue;
    const base = baselineRow(g.rows, row, baseline);
    if (!base) continue;
    for (const column of g.columns) {
      const x = groupAt(g, row, column),
        y = groupAt(g, base, column);
      if (!x || !y) continue;
      const seeds = (v: { seed: number }[]) => v.map((s) => s.seed).join();
      const paired = x.values.length > 1 && seeds(x.values) === seeds(y.values);
      const r = paired
        ? pairedDifference(x.values, y.values)
        : welchDifference(
            x.values.map((v) => v.value),
            y.values.map((v) => v.value),
          );
      const n = Math.min(x.values.length, y.values.length);
      const note =
        r.lo === null
          ? n < 2
            ? 'no interval: fewer than two seeds'
            : 'no interval: no spread over seeds'
          : n < MIN_SEEDS
            ? `fewer than ${MIN_SEEDS} seeds: the interval is wide and rests on the normality assumption`
            : undefined;
      const lrs = [learningRates(x.runs), learningRates(y.runs)];
      const lrNote =
        lrs[0].length && lrs[1].length && lrs[0].join() !== lrs[1].join()
          ? `the learning rate differs from the baseline's (${lrs[0].join(', ')} vs ${lrs[1].join(', ')}): part of the difference is the learning rate`
          : undefined;
      out.push({
        row: row.label,
        baseline: base.label,
        column,
        method: paired ? 'paired t' : 'Welch t',
        n: x.values.length,
        baselineN: y.values.length,
        ...r,
        significant: r.lo !== null && (r.lo > 0 || r.hi! < 0),
        ...(note ? { note } : {}),
        ...(lrNote ? { lr_note: lrNote } : {}),
      });
    }
  }
  return out;
}
