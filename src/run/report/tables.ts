import { groupAt, scoresEvalSplit, type Grouping } from './group.js';
import { LEVEL, MIN_SEEDS, meanOf, varianceOf, type Difference } from './significance.js';

/**
 * The paper's table shape (a row per strategy and setting, a column per task, mean ± std and max over
 * seeds) as report.json holds it, and its Markdown, CSV and LaTeX forms, which print exactly those numbers.
 */
export interface Cell {
  metric: string;
  mean: number;
  /** Sample standard deviation; null with a single seed, where it is undefined. */
  std: number | null;
  max: number;
  n: number;
  seeds: number[];
  /** Against the row's baseline, where it has one. */
  vs_baseline?: Omit<Difference, 'row' | 'column'>;
  /** What always answering the training split's majority class scores (mean over the runs that recorded it). */
  majority: number | null;
  /** Runs that predicted one class for every evaluation example. */
  single_class_runs: number;
}

export interface TableRow {
  /** The row label (strategy, settings, model). */
  strategy: string;
  kind: string;
  model: string | null;
  settings: Record<string, string>;
  /** Mean share of the parameters that trained over the row's runs; null when none recorded it. */
  trainable: number | null;
  cells: Record<string, Cell | null>;
}

export interface ReportTable {
  columns: string[];
  baseline: string;
  rows: TableRow[];
}

export function buildTable(g: Grouping, diffs: Difference[], baseline: string): ReportTable {
  return {
    columns: g.columns,
    baseline,
    rows: g.rows.map((row) => ({
      strategy: row.label,
      kind: row.strategy,
      model: row.model,
      settings: row.settings,
      trainable: trainableOf(g, row),
      cells: Object.fromEntries(
        g.columns.map((c) => {
          const group = groupAt(g, row, c);
          if (!group) return [c, null];
          const ys = group.values.map((v) => v.value);
          const d = diffs.find((x) => x.row === row.label && x.column === c);
          // A transfer or test column scores other data: the run's own majority class and predictions do not apply.
          const own = scoresEvalSplit(c) ? group.runs : [];
          const majority = own.map((r) => r.majority?.[group.metric]).filter((x): x is number => x !== undefined);
          const cell: Cell = {
            metric: group.metric,
            mean: meanOf(ys),
            std: ys.length > 1 ? Math.sqrt(varianceOf(ys)) : null,
            max: Math.max(...ys),
            n: ys.length,
            seeds: group.values.map((v) => v.seed),
            majority: majority.length ? meanOf(majority) : null,
            single_class_runs: own.filter((r) => r.singleClass !== null).length,
          };
          if (d) {
            const { row: _r, column: _c, ...rest } = d;
            cell.vs_baseline = rest;
          }
          return [c, cell];
        }),
      ),
    })),
  };
}

function trainableOf(g: Grouping, row: Grouping['rows'][number]): number | null {
  const shares = g.groups
    .filter((x) => x.row.key === row.key)
    .flatMap((x) => x.runs.map((r) => r.trainableShare))
    .filter((x): x is number => x !== null);
  return shares.length ? meanOf(shares) : null;
}

/** Scores are printed ×100 with two decimals, everywhere; an undefined spread as a dash. */
export const fmt = (x: number) => (x * 100).toFixed(2);
export const fmtStd = (x: number | null) => (x === null ? '–' : fmt(x));
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)}`;
const MARK = '*';
/** Beside a score whose runs (some of them) predicted one class only. */
export const ONE_CLASS = '⚠';
export const oneClassNote = `${ONE_CLASS}: runs that predicted one class for every evaluation example (their score is a constant answer's); majority: the score of always answering the training split's most frequent class.`;
/** The trainable share as printed: a percentage, or a dash where no run recorded it. */
export const fmtShare = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(2)}%`);
const anyMajority = (t: ReportTable) =>
  t.rows.some((r) => Object.values(r.cells).some((x) => x && x.majority !== null));
const metricOf = (t: ReportTable, c: string) => t.rows.map((r) => r.cells[c]?.metric).find(Boolean);

export function significanceNote(t: ReportTable): string {
  return `${MARK}: the ${LEVEL * 100}% interval of the difference from the ${t.baseline} row (same model and settings) excludes zero; paired t interval when both rows ran the same seeds, Welch's t interval otherwise.`;
}

export function markdownTable(t: ReportTable): string {
  const cellText = (x: Cell | null) =>
    x
      ? `${fmt(x.mean)} ± ${fmtStd(x.std)}${x.vs_baseline?.significant ? MARK : ''} (max ${fmt(x.max)}, n=${x.n}${x.majority === null ? '' : `, majority ${fmt(x.majority)}`})${x.single_class_runs ? ` ${ONE_CLASS} one class in ${x.single_class_runs} of ${x.n}` : ''}`
      : '–';
  const md = (s: string) => s.replace(/\|/g, '\\|');
  // The share of parameters that trained, last, where the runs recorded it.
  const trainable = t.rows.some((r) => r.trainable !== null);
  const share = (r: TableRow) => (trainable ? ` ${fmtShare(r.trainable)} |` : '');
  const lines = [
    `| strategy | ${t.columns.map((c) => md(`${c} (${metricOf(t, c)})`)).join(' | ')} |${trainable ? ' trainable |' : ''}`,
    `|---|${t.columns.map(() => '---').join('|')}|${trainable ? '---|' : ''}`,
  ];
  for (const r of t.rows)
    lines.push(`| ${md(r.strategy)} | ${t.columns.map((c) => cellText(r.cells[c])).join(' | ')} |${share(r)}`);
  lines.push('', 'Scores ×100: mean ± sample standard deviation over seeds, max over seeds, n = number of seeds.');
  if (anyMajority(t) || oneClassRuns(t)) lines.push(oneClassNote);
  const diffs = t.rows.flatMap((r) => t.columns.map((c) => ({ r, c, d: r.cells[c]?.vs_baseline })).filter((x) => x.d));
  if (diffs.length) {
    lines.push(
      significanceNote(t),
      '',
      `Difference from ${t.baseline} (×100, ${LEVEL * 100}% interval):`,
      '',
      '| strategy | task | difference | interval | method | n |',
      '|---|---|---|---|---|---|',
    );
    for (const { r, c, d } of diffs) {
      lines.push(
        `| ${md(r.strategy)} | ${md(c)} | ${signed(d!.diff)}${d!.significant ? MARK : ''} | ${d!.lo === null ? '–' : `[${signed(d!.lo)}, ${signed(d!.hi!)}]`} | ${d!.method} | ${d!.n} vs ${d!.baselineN} |`,
      );
    }
    for (const n of [...new Set(diffs.map((x) => x.d!.lr_note).filter(Boolean))])
      lines.push(
        '',
        `note: ${n} (${diffs
          .filter((x) => x.d!.lr_note === n)
          .map((x) => `${x.r.strategy} on ${x.c}`)
          .join('; ')})`,
      );
    const few = diffs.filter((x) => x.d!.note);
    if (few.length)
      lines.push(
        '',
        ...[...new Set(few.map((x) => x.d!.note!))].map(
          (n) =>
            `note: ${n} (${few
              .filter((x) => x.d!.note === n)
              .map((x) => `${x.r.strategy} on ${x.c}`)
              .join('; ')})`,
        ),
      );
  }
  return lines.join('\n');
}

const oneClassRuns = (t: ReportTable) => t.rows.some((r) => Object.values(r.cells).some((x) => x?.single_class_runs));

export function csvTable(t: ReportTable): string {
  const lines = ['strategy,column,metric,mean,std,max,n,seeds,majority,single_class_runs,trainable'];
  for (const r of t.rows)
    for (const c of t.columns) {
      const x = r.cells[c];
      if (x)
        lines.push(
          [
            r.strategy,
            c,
            x.metric,
            x.mean,
            x.std ?? '',
            x.max,
            x.n,
            x.seeds.join(' '),
            x.majority ?? '',
            x.single_class_runs,
            r.trainable ?? '',
          ]
            .map((v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v)))
            .join(','),
        );
    }
  return lines.join('\n') + '\n';
}

const TEX: Record<string, string> = {
  '\\': '\\textbackslash{}',
  '&': '\\&',
  '%': '\\%',
  $: '\\$',
  '#': '\\#',
  _: '\\_',
  '{': '\\{',
  '}': '\\}',
  '~': '\\textasciitilde{}',
  '^': '\\textasciicircum{}',
  '→': '$\\rightarrow$',
  '×': '$\\times$',
  '−': '$-$',
};
export const texEscape = (s: string) => s.replace(/[\\&%$#_{}~^→×−]/g, (c) => TEX[c]);

/**
 * A booktabs table: per task a mean ± std and a max column, the best of each column in bold (ties too:
 * compared as printed), significance marked. Needs \usepackage{booktabs} in the preamble.
 */
export function latexTable(t: ReportTable): string {
  const best = (c: string, field: 'mean' | 'max') =>
    Math.max(
      ...t.rows
        .map((r) => r.cells[c])
        .filter((x): x is Cell => !!x)
        .map((x) => Number(fmt(x[field]))),
    );
  const bold = (s: string, on: boolean) => (on ? `\\textbf{${s}}` : s);
  const head1 = t.columns.map((c) => `\\multicolumn{2}{c}{${texEscape(c)} (${texEscape(metricOf(t, c) ?? '')})}`);
  const rules = t.columns.map((_, i) => `\\cmidrule(lr){${2 + 2 * i}-${3 + 2 * i}}`);
  const trainable = t.rows.some((r) => r.trainable !== null);
  const share = (r: TableRow) =>
    trainable ? ` & ${r.trainable === null ? '--' : texEscape(fmtShare(r.trainable))}` : '';
  const lines = [
    '% childtune report; needs \\usepackage{booktabs}',
    '\\begin{table}[t]',
    '\\centering',
    `\\begin{tabular}{l${'rr'.repeat(t.columns.length)}${trainable ? 'r' : ''}}`,
    '\\toprule',
    ` & ${head1.join(' & ')}${trainable ? ' &' : ''} \\\\`,
    rules.join(' '),
    `Strategy & ${t.columns.map(() => 'Mean $\\pm$ Std & Max').join(' & ')}${trainable ? ' & Trainable' : ''} \\\\`,
    '\\midrule',
  ];
  for (const r of t.rows) {
    const cells = t.columns.map((c) => {
      const x = r.cells[c];
      if (!x) return '-- & --';
      const mean = bold(fmt(x.mean), Number(fmt(x.mean)) === best(c, 'mean'));
      return `${mean} $\\pm$ ${x.std === null ? '--' : fmt(x.std)}${x.vs_baseline?.significant ? '$^{*}$' : ''}${x.single_class_runs ? '$^{\\dagger}$' : ''} & ${bold(fmt(x.max), Number(fmt(x.max)) === best(c, 'max'))}`;
    });
    lines.push(`${texEscape(r.strategy)} & ${cells.join(' & ')}${share(r)} \\\\`);
  }
  // The floor every score is read against: one majority-class score per column (the same data for every row).
  if (anyMajority(t)) {
    const floor = t.columns.map((c) => {
      const xs = t.rows.map((r) => r.cells[c]?.majority).filter((x): x is number => x !== null && x !== undefined);
      return xs.length ? `${fmt(meanOf(xs))} & --` : '-- & --';
    });
    lines.push('\\midrule', `Majority class & ${floor.join(' & ')}${trainable ? ' & --' : ''} \\\\`);
  }
  const seeds = [
    ...new Set(t.rows.flatMap((r) => t.columns.map((c) => r.cells[c]?.n).filter((n): n is number => n !== undefined))),
  ].sort((a, b) => a - b);
  const anyMark = t.rows.some((r) => t.columns.some((c) => r.cells[c]?.vs_baseline));
  const caption = `Scores $\\times$100: mean $\\pm$ sample standard deviation and max over ${seeds.length === 1 ? seeds[0] : `${seeds[0]}--${seeds.at(-1)}`} seed${seeds.at(-1) === 1 ? '' : 's'}; best per column in bold.${oneClassRuns(t) ? ' $^{\\dagger}$: some runs predicted one class for every example.' : ''}${anyMark ? ` $^{*}$: the ${LEVEL * 100}\\% interval of the difference from ${texEscape(t.baseline)} excludes zero (paired $t$ when the seeds match, Welch's $t$ otherwise)${seeds[0] < MIN_SEEDS ? `; fewer than ${MIN_SEEDS} seeds in some cells` : ''}.` : ''}`;
  lines.push('\\bottomrule', '\\end{tabular}', `\\caption{${caption}}`, '\\end{table}');
  return lines.join('\n') + '\n';
}
