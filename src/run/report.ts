import path from 'node:path';
import { writeAtomic, writeJsonAtomic } from '../engine/files.js';
import { readChildMask } from './child-mask.js';
import { RunError } from './errors.js';
import { ranOnText, reportHtml, type RenderedFigure } from './report-html.js';
import { makeDir } from './rundir.js';
import { collectRuns, findRuns, type RunRecord } from './report/collect.js';
import { confusionEntries, confusionHtml, confusionMarkdown } from './report/confusion.js';
import { BAND, buildFigures } from './report/figures.js';
import { groupRuns, splitColumn } from './report/group.js';
import { svgToPdf } from './report/pdf.js';
import { figureRenderer, renderSvg } from './report/render.js';
import { differences } from './report/significance.js';
import { buildTable, csvTable, latexTable, markdownTable, type ReportTable } from './report/tables.js';

/**
 * `childtune report` and `childtune compare`: runs (directories with results.json) are gathered from run
 * and sweep directories, grouped (report/group.ts, shared by the table, the figures and the significance
 * tests) and written as the paper's table (Markdown, LaTeX, CSV, JSON), a self-contained HTML page and one
 * SVG (and PNG) per figure.
 */
export { collectRuns, type RunRecord };
export type { ReportTable };

export const FORMATS = ['markdown', 'latex', 'csv', 'json'] as const;
export type Format = (typeof FORMATS)[number];

/** Jaccard overlap of the child networks (child-mask.bin, D's) of different tasks (bits set in both / bits set in either). */
export function maskOverlaps(runs: RunRecord[]): { tasks: string[]; matrix: number[][] } | undefined {
  const byTask = new Map<string, { bits: Uint8Array; tensors: string }>();
  for (const r of runs) {
    const mask = !byTask.has(r.task) ? readChildMask(r.dir) : undefined;
    if (mask)
      byTask.set(r.task, {
        bits: mask.bits,
        tensors: JSON.stringify(mask.index.tensors.map((t) => [t.name, t.shape])),
      });
  }
  const tasks = [...byTask.keys()].sort();
  if (tasks.length < 2) return undefined;
  const popcount = (x: number) => {
    let c = 0;
    for (; x; x &= x - 1) c++;
    return c;
  };
  const matrix = tasks.map((a) =>
    tasks.map((b) => {
      const { bits: x, tensors: xt } = byTask.get(a)!,
        { bits: y, tensors: yt } = byTask.get(b)!;
      if (xt !== yt) return NaN;
      let both = 0,
        either = 0;
      for (let i = 0; i < x.length; i++) {
        both += popcount(x[i] & y[i]);
        either += popcount(x[i] | y[i]);
      }
      return either ? both / either : 1;
    }),
  );
  return { tasks, matrix };
}

export interface ReportOptions {
  out?: string;
  json?: boolean;
  format?: Format;
  baseline?: string;
}

export async function reportCommand(
  dirs: string[],
  opts: ReportOptions,
  io: { out: (t: string) => void; err: (t: string) => void },
): Promise<number> {
  const { runs, notes } = findRuns(dirs);
  const baseline = opts.baseline ?? 'vanilla';
  const grouping = groupRuns(runs, baseline);
  if (opts.baseline && !grouping.rows.some((r) => r.strategy === baseline)) {
    throw new RunError(
      `--baseline ${baseline}: no run has that strategy`,
      `Strategies in these runs: ${[...new Set(grouping.rows.map((r) => r.strategy))].join(', ')}.`,
      undefined,
    );
  }
  const diffs = differences(grouping, baseline);
  const table = buildTable(grouping, diffs, baseline);
  const out = opts.out ?? dirs[0];
  const figuresDir = path.join(out, 'figures');
  makeDir(
    figuresDir,
    'report directory',
    'Pass --out a writable directory (the default is the first directory given).',
  );

  const renderer = await figureRenderer();
  const rendered: RenderedFigure[] = [];
  for (const f of buildFigures(grouping, maskOverlaps(runs))) {
    const drawn = await renderSvg(f.spec);
    const svg = 'crop' in renderer ? renderer.crop(drawn) : drawn;
    writeAtomic(path.join(figuresDir, `${f.id}.svg`), svg);
    writeAtomic(path.join(figuresDir, `${f.id}.pdf`), await svgToPdf(svg));
    if ('png' in renderer) writeAtomic(path.join(figuresDir, `${f.id}.png`), renderer.png(svg));
    rendered.push({ id: f.id, caption: f.caption, svg, perRun: f.perRun });
  }
  const warnings = [...notes, ...grouping.warnings];
  // Where the runs trained, with how many runs each: a GPU and a CPU run agree within tolerance, not bit for bit.
  const ranOn: Record<string, number> = {};
  for (const r of runs) if (r.ranOn) ranOn[r.ranOn] = (ranOn[r.ranOn] ?? 0) + 1;
  const confusion = confusionEntries(runs, out);
  writeJsonAtomic(path.join(out, 'report.json'), {
    runs: runs.map((r) => path.relative(out, r.dir)),
    ran_on: ranOn,
    table,
    significance: diffs,
    warnings,
    band: BAND,
    figures: rendered.map((f) => ({ id: f.id, caption: f.caption, per_run: !!f.perRun })),
    confusion_matrices: confusion,
  });
  writeAtomic(path.join(out, 'report.csv'), csvTable(table));
  const confusionMd = confusionMarkdown(confusion);
  writeAtomic(path.join(out, 'report.md'), markdownTable(table) + '\n' + (confusionMd && `\n${confusionMd}\n`));
  writeAtomic(path.join(out, 'report.tex'), latexTable(table));
  writeAtomic(
    path.join(out, 'report.html'),
    reportHtml({
      runs: runs.length,
      table,
      differences: diffs,
      warnings,
      figures: rendered,
      ranOn,
      confusion: confusionHtml(confusion),
    }),
  );

  const format = opts.json ? 'json' : (opts.format ?? 'markdown');
  io.out(
    format === 'json'
      ? JSON.stringify(table, null, 2)
      : format === 'latex'
        ? latexTable(table).trimEnd()
        : format === 'csv'
          ? csvTable(table).trimEnd()
          : markdownTable(table),
  );
  for (const w of warnings) io.err(`warning: ${w}`);
  if (Object.keys(ranOn).length) io.err(`ran on: ${ranOnText(ranOn)}`);
  const figures = rendered.length
    ? ` and ${rendered.length} figure${rendered.length > 1 ? 's' : ''} (SVG, PDF${'png' in renderer ? ' and PNG' : ''})`
    : '';
  io.err(`wrote report.{json,csv,md,tex,html}${figures} to ${out} (${runs.length} run${runs.length > 1 ? 's' : ''})`);
  if ('unavailable' in renderer) io.err(`note: ${renderer.unavailable}; figures are SVG and PDF only, uncropped`);
  return 0;
}

/** `childtune compare A B`: per-metric means of each side and their difference, with a note when seeds differ. */
export function compareCommand(a: string, b: string, io: { out: (t: string) => void }): number {
  const sides = [collectRuns([a]), collectRuns([b])];
  const means = sides.map((runs) => {
    const m = new Map<string, number[]>();
    for (const r of runs) {
      for (const [k, v] of Object.entries(r.metrics)) m.set(`${r.task} ${k}`, [...(m.get(`${r.task} ${k}`) ?? []), v]);
      for (const [split, ms] of Object.entries(r.splits ?? {}))
        for (const [k, v] of Object.entries(ms))
          m.set(`${splitColumn(r.task, split)} ${k}`, [...(m.get(`${splitColumn(r.task, split)} ${k}`) ?? []), v]);
      for (const [t, ms] of Object.entries(r.transfer))
        for (const [k, v] of Object.entries(ms))
          m.set(`${r.task} → ${t} ${k}`, [...(m.get(`${r.task} → ${t} ${k}`) ?? []), v]);
    }
    return new Map([...m].map(([k, vs]) => [k, vs.reduce((x, y) => x + y, 0) / vs.length]));
  });
  const keys = [...new Set([...means[0].keys(), ...means[1].keys()])].sort();
  const lines = [`| metric | A | B | B − A |`, `|---|---|---|---|`];
  for (const k of keys) {
    const x = means[0].get(k),
      y = means[1].get(k);
    lines.push(
      `| ${k} | ${x?.toFixed(4) ?? '–'} | ${y?.toFixed(4) ?? '–'} | ${x !== undefined && y !== undefined ? (y - x >= 0 ? '+' : '') + (y - x).toFixed(4) : '–'} |`,
    );
  }
  const seeds = sides.map((runs) => [...new Set(runs.map((r) => r.seed))].sort((p, q) => p - q));
  // What each side is: its rows as the report names them (strategy, settings, model), its tasks and seeds.
  const describe = (runs: RunRecord[], i: number) => {
    const rows = groupRuns(runs)
      .rows.map((r) => r.label)
      .join('; ');
    const tasks = [...new Set(runs.map((r) => r.task))].sort().join(', ');
    const n = runs.length,
      s = seeds[i];
    return `${'AB'[i]}: ${[a, b][i]}: ${rows} on ${tasks} (${n} run${n === 1 ? '' : 's'}, seed${s.length === 1 ? '' : 's'} ${s.join(', ')})`;
  };
  lines.push('', ...sides.map(describe), 'Values are means over runs.');
  if (seeds[0].join() !== seeds[1].join())
    lines.push(
      `note: the seeds differ (A: ${seeds[0].join(', ')}; B: ${seeds[1].join(', ')}), so part of any difference is seed variance.`,
    );
  io.out(lines.join('\n'));
  return 0;
}
