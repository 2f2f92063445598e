import fs from 'node:fs';
import path from 'node:path';
import { TASKS } from '../data/tasks.js';
import { writeAtomic } from '../engine/checkpoint.js';
import { readChildMask } from './child-mask.js';
import { RunError } from './errors.js';
import { reportHtml } from './report-html.js';

/**
 * `childtune report` and `childtune compare`: runs (directories with results.json) are gathered from run
 * and sweep directories and aggregated into the paper's table shape: one row per strategy, one column per
 * task (and per transfer target), mean, standard deviation and max over seeds.
 */
export interface RunRecord {
  dir: string;
  task: string;
  strategy: string;
  reserve_p: number | null;
  seed: number;
  metrics: Record<string, number>;
  transfer: Record<string, Record<string, number>>;
  /** Loss and evaluation curves from metrics.jsonl. */
  curve: { step: number; loss?: number; metrics?: Record<string, number> }[];
  mask?: { per_layer: Record<string, number>; fisher?: { threshold: number; histogram: { log10_edges: number[]; counts: number[]; zeros: number } } };
}

export interface Cell {
  metric: string;
  mean: number;
  std: number;
  max: number;
  n: number;
  seeds: number[];
}

export interface ReportTable {
  columns: string[];
  rows: { strategy: string; cells: Record<string, Cell | null> }[];
}

/** Every run under the given directories (a run directory itself, or a sweep or parent directory). */
export function collectRuns(dirs: string[]): RunRecord[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    if (fs.existsSync(path.join(d, 'results.json'))) return void found.push(d);
    if (depth === 0) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) if (e.isDirectory() && e.name !== 'prepare' && e.name !== 'checkpoints' && e.name !== 'model') walk(path.join(d, e.name), depth - 1);
  };
  for (const d of dirs) {
    if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) throw new RunError(`${d} is not a directory`, 'Pass run or sweep directories.');
    walk(d, 3);
  }
  if (!found.length) throw new RunError(`no finished runs (results.json) under ${dirs.join(', ')}`, 'Pass run or sweep directories whose trials have finished.');
  return found.map(readRun);
}

function readRun(dir: string): RunRecord {
  const r = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
  const metricsFile = path.join(dir, 'metrics.jsonl');
  const curve = fs.existsSync(metricsFile) ? readJsonl(metricsFile).map((e) => ({ step: e.step, loss: e.loss, metrics: e.metrics })) : [];
  const maskFile = path.join(dir, 'mask-stats.json');
  const mask = fs.existsSync(maskFile) ? JSON.parse(fs.readFileSync(maskFile, 'utf8')) : undefined;
  return { dir, task: r.task, strategy: r.strategy, reserve_p: r.reserve_p, seed: r.seed, metrics: r.metrics, transfer: r.transfer ?? {}, curve, mask: mask && { per_layer: mask.per_layer, fisher: mask.fisher && { threshold: mask.fisher.threshold, histogram: mask.fisher.histogram } } };
}

/**
 * metrics.jsonl entries. A last line cut short (a run killed while appending, whose resume has not yet
 * trimmed it) is left out; a malformed line anywhere else is an error naming it.
 */
function readJsonl(file: string): { step: number; loss?: number; metrics?: Record<string, number> }[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      out.push(JSON.parse(lines[i]));
    } catch {
      if (i === lines.length - 1) break;
      throw new RunError(`${file}:${i + 1}: not a JSON line`, 'The file was edited or damaged; rerun the trial.');
    }
  }
  return out;
}

const strategyLabel = (r: RunRecord) => (r.reserve_p !== null && r.strategy !== 'vanilla' ? `${r.strategy} (p=${r.reserve_p})` : r.strategy);
/** The metric the paper reports for a task: the first of its metrics. */
const primaryMetric = (task: string, metrics: Record<string, number>) => (TASKS as Record<string, { metrics: string[] }>)[task]?.metrics[0] ?? Object.keys(metrics)[0];

function cell(values: { value: number; seed: number }[], metric: string): Cell {
  const n = values.length;
  const mean = values.reduce((a, v) => a + v.value, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v.value - mean) ** 2, 0) / (n - 1)) : 0;
  return { metric, mean, std, max: Math.max(...values.map((v) => v.value)), n, seeds: values.map((v) => v.seed).sort((a, b) => a - b) };
}

export function aggregate(runs: RunRecord[]): ReportTable {
  const groups = new Map<string, Map<string, { value: number; seed: number; metric: string }[]>>();
  const columns = new Set<string>();
  const add = (row: string, column: string, metric: string, value: number | undefined, seed: number) => {
    if (value === undefined) return;
    columns.add(column);
    const byColumn = groups.get(row) ?? new Map();
    groups.set(row, byColumn);
    const list = byColumn.get(column) ?? [];
    byColumn.set(column, list);
    list.push({ value, seed, metric });
  };
  for (const r of runs) {
    const row = strategyLabel(r);
    const m = primaryMetric(r.task, r.metrics);
    add(row, r.task, m, r.metrics[m], r.seed);
    for (const [target, metrics] of Object.entries(r.transfer)) {
      const tm = Object.keys(metrics)[0];
      add(row, `${r.task} → ${target}`, tm, metrics[tm], r.seed);
    }
  }
  const cols = [...columns].sort();
  return {
    columns: cols,
    rows: [...groups.keys()].sort().map((strategy) => ({
      strategy,
      cells: Object.fromEntries(cols.map((c) => {
        const list = groups.get(strategy)!.get(c);
        return [c, list ? cell(list, list[0].metric) : null];
      })),
    })),
  };
}

const fmt = (x: number) => (x * 100).toFixed(2);

export function markdownTable(t: ReportTable): string {
  const head = `| strategy | ${t.columns.map((c) => `${c} (${t.rows.map((r) => r.cells[c]?.metric).find(Boolean)})`).join(' | ')} |`;
  const lines = [head, `|---|${t.columns.map(() => '---').join('|')}|`];
  for (const r of t.rows) lines.push(`| ${r.strategy} | ${t.columns.map((c) => { const x = r.cells[c]; return x ? `${fmt(x.mean)} ± ${fmt(x.std)} (max ${fmt(x.max)}, n=${x.n})` : '–'; }).join(' | ')} |`);
  return lines.join('\n') + '\n\nScores ×100: mean ± sample standard deviation over seeds, max over seeds, n = number of seeds.';
}

export function csvTable(t: ReportTable): string {
  const lines = ['strategy,column,metric,mean,std,max,n,seeds'];
  for (const r of t.rows) for (const c of t.columns) {
    const x = r.cells[c];
    if (x) lines.push([r.strategy, c, x.metric, x.mean, x.std, x.max, x.n, x.seeds.join(' ')].map((v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v))).join(','));
  }
  return lines.join('\n') + '\n';
}

/** Jaccard overlap of the D child networks of different tasks (bits set in both / bits set in either). */
export function maskOverlaps(runs: RunRecord[]): { tasks: string[]; matrix: number[][] } | undefined {
  const byTask = new Map<string, { bits: Uint8Array; tensors: string }>();
  for (const r of runs) {
    const mask = r.strategy === 'child-tuning-d' && !byTask.has(r.task) ? readChildMask(r.dir) : undefined;
    if (mask) byTask.set(r.task, { bits: mask.bits, tensors: JSON.stringify(mask.index.tensors.map((t) => [t.name, t.shape])) });
  }
  const tasks = [...byTask.keys()].sort();
  if (tasks.length < 2) return undefined;
  const popcount = (x: number) => { let c = 0; for (; x; x &= x - 1) c++; return c; };
  const matrix = tasks.map((a) => tasks.map((b) => {
    const { bits: x, tensors: xt } = byTask.get(a)!, { bits: y, tensors: yt } = byTask.get(b)!;
    if (xt !== yt) return NaN;
    let both = 0, either = 0;
    for (let i = 0; i < x.length; i++) { both += popcount(x[i] & y[i]); either += popcount(x[i] | y[i]); }
    return either ? both / either : 1;
  }));
  return { tasks, matrix };
}

export function reportCommand(dirs: string[], opts: { out?: string; json?: boolean }, io: { out: (t: string) => void; err: (t: string) => void }): number {
  const runs = collectRuns(dirs);
  const table = aggregate(runs);
  const out = opts.out ?? dirs[0];
  fs.mkdirSync(out, { recursive: true });
  writeAtomic(path.join(out, 'report.json'), JSON.stringify({ runs: runs.map((r) => path.relative(out, r.dir)), table }, null, 2) + '\n');
  writeAtomic(path.join(out, 'report.csv'), csvTable(table));
  writeAtomic(path.join(out, 'report.html'), reportHtml(runs, table, maskOverlaps(runs)));
  io.out(opts.json ? JSON.stringify(table, null, 2) : markdownTable(table));
  io.err(`wrote report.json, report.csv and report.html to ${out} (${runs.length} runs)`);
  return 0;
}

/** `childtune compare A B`: per-metric means of each side and their difference, with a note when seeds differ. */
export function compareCommand(a: string, b: string, io: { out: (t: string) => void }): number {
  const sides = [collectRuns([a]), collectRuns([b])];
  const means = sides.map((runs) => {
    const m = new Map<string, number[]>();
    for (const r of runs) {
      for (const [k, v] of Object.entries(r.metrics)) m.set(`${r.task} ${k}`, [...(m.get(`${r.task} ${k}`) ?? []), v]);
      for (const [t, ms] of Object.entries(r.transfer)) for (const [k, v] of Object.entries(ms)) m.set(`${r.task} → ${t} ${k}`, [...(m.get(`${r.task} → ${t} ${k}`) ?? []), v]);
    }
    return new Map([...m].map(([k, vs]) => [k, vs.reduce((x, y) => x + y, 0) / vs.length]));
  });
  const keys = [...new Set([...means[0].keys(), ...means[1].keys()])].sort();
  const lines = [`| metric | A | B | B − A |`, `|---|---|---|---|`];
  for (const k of keys) {
    const x = means[0].get(k), y = means[1].get(k);
    lines.push(`| ${k} | ${x?.toFixed(4) ?? '–'} | ${y?.toFixed(4) ?? '–'} | ${x !== undefined && y !== undefined ? (y - x >= 0 ? '+' : '') + (y - x).toFixed(4) : '–'} |`);
  }
  const seeds = sides.map((runs) => [...new Set(runs.map((r) => r.seed))].sort((p, q) => p - q));
  lines.push('', `A: ${a} (${sides[0].length} runs), B: ${b} (${sides[1].length} runs); values are means over runs.`);
  if (seeds[0].join() !== seeds[1].join()) lines.push(`note: the seeds differ (A: ${seeds[0].join(', ')}; B: ${seeds[1].join(', ')}), so part of any difference is seed variance.`);
  io.out(lines.join('\n'));
  return 0;
}
