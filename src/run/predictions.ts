import { predictionOf, softmax } from './evaluate.js';

/** One predicted row: where it came from, its gold label if the file had one, and the model's logits. */
export interface PredictedRow {
  /** 0-based position among the rows predicted. */
  index: number;
  /** 1-based line (parquet: row) of the source file. */
  line: number;
  /** Class index or score; NaN where the row has no gold label. */
  gold: number;
  logits: Float32Array;
}

/** Where a table cell could break the TSV: tabs and line breaks become spaces. */
const cell = (s: string) => s.replace(/[\t\r\n]/g, ' ');

/** How a class or score is written: a class by name, a score with 6 decimals. */
const valueText = (v: number, labels: readonly string[] | null) =>
  Number.isNaN(v) ? '' : labels ? cell(labels[v]) : v.toFixed(6);

/**
 * The predictions of a run (predictions/dev.tsv) and of `childtune predict`, in one layout: `index`, `line`,
 * `gold` (empty where the row has none), `predicted` (the class name, or the score for regression) and for
 * classification one `p_<class>` column per class, its softmax probability.
 */
export function predictionsTsv(rows: readonly PredictedRow[], labels: readonly string[] | null): string {
  const head = ['index', 'line', 'gold', 'predicted', ...(labels ?? []).map((l) => `p_${cell(l)}`)];
  const lines = [head.join('\t')];
  for (const r of rows) {
    const probabilities = labels ? softmax(r.logits).map((p) => p.toFixed(6)) : [];
    lines.push(
      [r.index, r.line, valueText(r.gold, labels), valueText(predictionOf(r.logits), labels), ...probabilities].join(
        '\t',
      ),
    );
  }
  return lines.join('\n') + '\n';
}
