import {
  fmt,
  fmtShare,
  fmtStd,
  ONE_CLASS,
  oneClassNote,
  significanceNote,
  type Cell,
  type ReportTable,
} from './report/tables.js';
import { LEVEL, type Difference } from './report/significance.js';

/**
 * A self-contained HTML report: the table, the differences from the baseline, and the figures as inline
 * SVG (rendered in Node, so the page needs no script and fetches nothing). The per-run figures sit behind
 * a <details> toggle.
 */
export interface RenderedFigure {
  id: string;
  caption: string;
  svg: string;
  perRun?: boolean;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)}`;

function cellHtml(x: Cell | null, best: boolean): string {
  if (!x) return '<td class="empty">–</td>';
  const mark = x.vs_baseline?.significant ? `<sup title="differs from the baseline beyond seed noise">*</sup>` : '';
  const mean = best ? `<strong>${fmt(x.mean)}</strong>` : fmt(x.mean);
  const oneClass = x.single_class_runs
    ? ` <span class="warn" title="runs that predicted one class for every evaluation example">${ONE_CLASS} one class in ${x.single_class_runs} of ${x.n}</span>`
    : '';
  const majority = x.majority === null ? '' : ` · majority ${fmt(x.majority)}`;
  return `<td>${mean} ± ${fmtStd(x.std)}${mark}${oneClass}<span class="sub">max ${fmt(x.max)} · n=${x.n}${majority}</span></td>`;
}

function tableHtml(t: ReportTable): string {
  const metric = (c: string) => t.rows.map((r) => r.cells[c]?.metric).find(Boolean);
  const best = (c: string) =>
    Math.max(
      ...t.rows
        .map((r) => r.cells[c])
        .filter((x): x is Cell => !!x)
        .map((x) => Number(fmt(x.mean))),
    );
  // The share of parameters that trained, last, where the runs recorded it.
  const trainable = t.rows.some((r) => r.trainable !== null);
  const head = `<tr><th>strategy</th>${t.columns.map((c) => `<th>${esc(c)}<span class="sub">${esc(metric(c) ?? '')} × 100</span></th>`).join('')}${trainable ? '<th>trainable<span class="sub">share of parameters</span></th>' : ''}</tr>`;
  const body = t.rows
    .map(
      (r) =>
        `<tr><th scope="row">${esc(r.strategy)}</th>${t.columns.map((c) => cellHtml(r.cells[c], !!r.cells[c] && Number(fmt(r.cells[c]!.mean)) === best(c))).join('')}${trainable ? `<td>${fmtShare(r.trainable)}</td>` : ''}</tr>`,
    )
    .join('\n');
  const noted = t.rows.some((r) =>
    Object.values(r.cells).some((x) => x && (x.majority !== null || x.single_class_runs)),
  );
  return `<table class="scores">\n${head}\n${body}\n</table>${noted ? `\n<p class="caption">${esc(oneClassNote)}</p>` : ''}`;
}

function differencesHtml(t: ReportTable, diffs: Difference[]): string {
  if (!diffs.length)
    return `<p>No significance test: no row has a ${esc(t.baseline)} row with the same model and settings to compare with (choose another with <code>--baseline KIND</code>).</p>`;
  const rows = diffs.map(
    (d) =>
      `<tr><th scope="row">${esc(d.row)}</th><td class="left">${esc(d.column)}</td><td>${signed(d.diff)}${d.significant ? '<sup>*</sup>' : ''}</td><td>${d.lo === null ? '–' : `[${signed(d.lo)}, ${signed(d.hi!)}]`}</td><td class="left">${d.method}</td><td>${d.n} vs ${d.baselineN}</td><td class="left note">${esc([d.note, d.lr_note].filter(Boolean).join('; '))}</td></tr>`,
  );
  return `<table class="diffs">\n<tr><th>strategy</th><th>task</th><th>difference</th><th>${LEVEL * 100}% interval</th><th>method</th><th>seeds</th><th>note</th></tr>\n${rows.join('\n')}\n</table>\n<p class="caption">Difference of means from the ${esc(t.baseline)} row with the same model and settings, ×100. ${esc(significanceNote(t))}</p>`;
}

const figureHtml = (f: RenderedFigure) =>
  `<figure id="fig-${esc(f.id)}">${f.svg}<figcaption>${esc(f.caption)} <span class="files">(${esc(`figures/${f.id}.svg`)})</span></figcaption></figure>`;

export function reportHtml(input: {
  runs: number;
  table: ReportTable;
  differences: Difference[];
  warnings: string[];
  figures: RenderedFigure[];
  /** Where the runs trained, and how many each. */
  ranOn?: Record<string, number>;
  /** The confusion matrices section (report/confusion.ts), empty when no run recorded one. */
  confusion?: string;
}): string {
  const summary = input.figures.filter((f) => !f.perRun);
  const perRun = input.figures.filter((f) => f.perRun);
  const warnings = input.warnings.length
    ? `<div class="warnings"><strong>Check before use:</strong><ul>${input.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></div>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>childtune report</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1.5em 2em; max-width: 1240px; color: #1d1d1d; }
h1 { font-size: 1.6em; margin: 0 0 0.2em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; text-align: right; vertical-align: top; border-bottom: 1px solid #e4e4e4; }
tr:first-child th { border-bottom: 2px solid #444; vertical-align: bottom; }
th[scope="row"], td.left, th:first-child { text-align: left; }
.sub { display: block; font-size: 0.8em; color: #666; font-weight: normal; }
td.note { color: #666; font-size: 0.88em; max-width: 28em; }
.caption, figcaption { color: #444; font-size: 0.9em; }
.files { color: #888; }
.warn { color: #a04000; font-size: 0.85em; white-space: nowrap; }
.warnings { background: #fff6e0; border: 1px solid #e9c46a; padding: 0.5em 1em; margin: 1em 0; }
.warnings ul { margin: 0.3em 0; padding-left: 1.2em; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1.5em 2em; }
figure { margin: 0; min-width: 0; }
figure svg { display: block; max-width: 100%; height: auto; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: 600; }
.confusions { display: flex; flex-wrap: wrap; gap: 0 2em; }
table.confusion caption { text-align: left; font-size: 0.9em; color: #444; }
</style>
</head>
<body>
<h1>childtune report</h1>
<p>${input.runs} runs, grouped by model, task, strategy and every swept setting; each seed counts once. Scores ×100: mean ± sample standard deviation over seeds (bold: best mean per task), max and number of seeds below.</p>
${input.ranOn && Object.keys(input.ranOn).length ? `<p class="caption">Ran on: ${esc(ranOnText(input.ranOn))}.</p>\n` : ''}${warnings}
<h2>Scores</h2>
${tableHtml(input.table)}
<h2>Difference from ${esc(input.table.baseline)}</h2>
${differencesHtml(input.table, input.differences)}
<h2>Figures</h2>
<p class="caption">Lines are means over seeds; shaded bands and error bars span ± 1 sample standard deviation over seeds. Each figure is also in <code>figures/</code> as SVG (and PNG).</p>
<div class="figures">
${summary.map(figureHtml).join('\n')}
</div>
${input.confusion ? `${input.confusion}\n` : ''}${perRun.length ? `<details id="per-run">\n<summary>Per-run curves (${input.runs} runs, one line each)</summary>\n<div class="figures">\n${perRun.map(figureHtml).join('\n')}\n</div>\n</details>` : ''}
</body>
</html>
`;
}

/** "webgpu on google swiftshader (...) (2 runs); wasm, 2 threads (1 run)". */
export const ranOnText = (ranOn: Record<string, number>) =>
  Object.entries(ranOn)
    .map(([where, n]) => `${where} (${n} run${n === 1 ? '' : 's'})`)
    .join('; ');
