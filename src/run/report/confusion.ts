import path from 'node:path';
import type { RunRecord } from './collect.js';

/**
 * Each run's confusion matrix on its evaluation split (rows: gold class, columns: predicted class), for the
 * report: a score hides which classes a model confuses, and a run that learned one class shows as one full column.
 */
export interface ConfusionEntry {
  /** The run directory, relative to the report's directory. */
  run: string;
  task: string;
  strategy: string;
  seed: number;
  labels: string[];
  matrix: number[][];
}

/** The runs that recorded a confusion matrix, in the report's run order. */
export const confusionEntries = (runs: RunRecord[], out: string): ConfusionEntry[] =>
  runs
    .filter((r) => r.confusion)
    .map((r) => ({
      run: path.relative(out, r.dir) || '.',
      task: r.task,
      strategy: r.strategy,
      seed: r.seed,
      ...r.confusion!,
    }));

const title = (e: ConfusionEntry) => `${e.run}: ${e.strategy} on ${e.task}, seed ${e.seed}`;

/** A Markdown section with one table per run; empty when no run recorded one. */
export function confusionMarkdown(entries: ConfusionEntry[]): string {
  if (!entries.length) return '';
  const md = (s: string) => s.replace(/[|\\]/g, (c) => `\\${c}`);
  const blocks = entries.map((e) =>
    [
      `### ${md(title(e))}`,
      '',
      `| gold \\ predicted | ${e.labels.map(md).join(' | ')} |`,
      `|---|${e.labels.map(() => '---:').join('|')}|`,
      ...e.matrix.map((row, i) => `| ${md(e.labels[i])} | ${row.join(' | ')} |`),
    ].join('\n'),
  );
  return [
    '## Confusion matrices',
    '',
    'Evaluation examples by gold class (rows) and predicted class (columns).',
    '',
    blocks.join('\n\n'),
  ].join('\n');
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/**
 * An HTML section with one small table per run, in the page's flow (not behind a toggle: the hidden content
 * of a closed <details> keeps its layout boxes, which would sit on the per-run figures'); empty when no run
 * recorded one.
 */
export function confusionHtml(entries: ConfusionEntry[]): string {
  if (!entries.length) return '';
  const tables = entries.map(
    (e) =>
      `<table class="confusion"><caption>${esc(title(e))}</caption>\n<tr><th>gold \\ predicted</th>${e.labels.map((l) => `<th>${esc(l)}</th>`).join('')}</tr>\n${e.matrix.map((row, i) => `<tr><th scope="row">${esc(e.labels[i])}</th>${row.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n')}\n</table>`,
  );
  return `<h2>Confusion matrices</h2>\n<p class="caption">Per run: evaluation examples by gold class (rows) and predicted class (columns).</p>\n<div class="confusions">\n${tables.join('\n')}\n</div>`;
}
