import type { TopLevelSpec } from 'vega-lite';
import {
  bands,
  epochAxis,
  fisherHistograms,
  groupsOf,
  keptPerLayer,
  lossExtract,
  metricExtract,
  perRun,
} from './curves.js';
import { scoresEvalSplit, type Grouping } from './group.js';

/**
 * The report's figures as Vega-Lite specifications, from the shared grouping: summaries (mean over seeds
 * with a ± 1 standard deviation band, one colour per row) and the per-run views behind them. A row keeps
 * its colour in every figure.
 */
export interface Figure {
  /** File name stem under figures/. */
  id: string;
  /** What the figure shows and how (the band, the scales), for the HTML caption. */
  caption: string;
  spec: TopLevelSpec;
  /** Per-run view (shown behind a click in the HTML). */
  perRun?: boolean;
}

export const BAND = '± 1 sample standard deviation over seeds';

const PALETTE = [
  '#4c78a8',
  '#f58518',
  '#54a24b',
  '#e45756',
  '#72b7b2',
  '#b279a2',
  '#eeca3b',
  '#9d755d',
  '#ff9da6',
  '#bab0ac',
];
const WIDTH = 470,
  HEIGHT = 250;

const CONFIG = {
  font: 'sans-serif',
  axis: { titleFontSize: 13, labelFontSize: 12, titleFontWeight: 'normal' as const, grid: true, gridColor: '#e8e8e8' },
  legend: {
    titleFontSize: 12,
    labelFontSize: 12,
    orient: 'bottom' as const,
    direction: 'vertical' as const,
    labelLimit: 0,
    symbolStrokeWidth: 3,
  },
  title: { fontSize: 14, anchor: 'start' as const, offset: 8 },
  view: { stroke: '#bbb' },
};

const fileId = (s: string) =>
  s
    .replace(/[^A-Za-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .toLowerCase();

/** Colour of each row label in every figure, so legends agree across figures. */
function colours(g: Grouping) {
  const all = g.rows.map((r) => r.label);
  return (present: string[]) => {
    const domain = all.filter((l) => present.includes(l));
    return { domain, range: domain.map((l) => PALETTE[all.indexOf(l) % PALETTE.length]) };
  };
}

const legendColumns = (n: number) => (n > 6 ? 2 : 1);

/** Colour by row; `lines` draws the legend's symbols as solid strokes (a band's faded fill would be its symbol otherwise). */
function colour(scale: { domain: string[]; range: string[] }, legend: 'lines' | 'boxes' | false = 'boxes') {
  const symbols =
    legend === 'lines'
      ? { symbolType: 'stroke', symbolOpacity: 1, symbolStrokeWidth: 3, symbolSize: 300 }
      : { symbolType: 'square', symbolOpacity: 1 };
  // Layers that add no legend leave it unset (null in one layer and a legend in another conflict).
  return {
    field: 'row',
    type: 'nominal' as const,
    scale,
    sort: scale.domain,
    ...(legend ? { legend: { title: null, columns: legendColumns(scale.domain.length), ...symbols } } : {}),
  };
}

function base(title: string, subtitle?: string) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: subtitle ? { text: title, subtitle } : title,
    width: WIDTH,
    height: HEIGHT,
    config: CONFIG,
    background: 'white',
  };
}

/** Mean line and band per row, against x. */
/**
 * A y scale around the data; a flat series (every value equal) gets a small explicit range, where Vega would
 * draw one unrounded tick.
 */
function yScale(values: number[]) {
  const lo = Math.min(...values),
    hi = Math.max(...values);
  if (hi - lo > 1e-9 * Math.max(1, Math.abs(hi))) return { zero: false };
  const pad = Math.max(0.5, Math.abs(hi) * 0.01);
  return { zero: false, domain: [lo - pad, hi + pad] };
}

function bandSpec(
  title: string,
  points: ReturnType<typeof bands>,
  scale: ReturnType<ReturnType<typeof colours>>,
  x: object,
  yTitle: string,
  withPoints: boolean,
): TopLevelSpec {
  const y = { scale: yScale(points.flatMap((p) => [p.lo, p.hi])), title: yTitle };
  return {
    ...base(title),
    data: { values: points },
    encoding: { x: { field: 'x', type: 'quantitative', ...x }, color: colour(scale, 'lines') },
    layer: [
      {
        mark: { type: 'area', opacity: 0.18 },
        encoding: { y: { field: 'lo', type: 'quantitative', ...y }, y2: { field: 'hi' } },
      },
      {
        mark: { type: 'line', strokeWidth: 2, point: withPoints },
        encoding: { y: { field: 'mean', type: 'quantitative', ...y } },
      },
    ],
  } as TopLevelSpec;
}

function runSpec(
  title: string,
  points: ReturnType<typeof perRun>,
  scale: ReturnType<ReturnType<typeof colours>>,
  x: object,
  yTitle: string,
): TopLevelSpec {
  return {
    ...base(title),
    data: { values: points },
    mark: { type: 'line', strokeWidth: 1.2, opacity: 0.8 },
    encoding: {
      x: { field: 'x', type: 'quantitative', ...x },
      y: { field: 'y', type: 'quantitative', scale: yScale(points.map((p) => p.y)), title: yTitle },
      color: colour(scale, 'lines'),
      detail: { field: 'run' },
    },
  } as TopLevelSpec;
}

export function buildFigures(g: Grouping, overlap: { tasks: string[]; matrix: number[][] } | undefined): Figure[] {
  const palette = colours(g);
  const figures: Figure[] = [];
  const tasks = g.columns.filter(scoresEvalSplit);
  for (const column of tasks) {
    const groups = groupsOf(g, column);
    const byEpoch = epochAxis(groups);
    const lossX = {
      title: byEpoch ? 'epoch (logged steps, fractional)' : 'optimizer step',
      axis: byEpoch ? { tickMinStep: 0.5 } : { format: 'd' },
    };
    const loss = bands(groups, lossExtract(byEpoch));
    const id = fileId(column);
    if (loss.length) {
      const scale = palette([...new Set(loss.map((p) => p.row))]);
      figures.push({
        id: `loss-${id}`,
        caption: `Training loss (cross-entropy; mean squared error for regression) on ${column}, averaged over each logging window: mean over seeds, band ${BAND}.`,
        spec: bandSpec(`Training loss · ${column}`, loss, scale, lossX, 'training loss', false),
      });
      const runs = perRun(groups, lossExtract(byEpoch));
      figures.push({
        id: `loss-${id}-runs`,
        caption: `Training loss on ${column}, one line per run.`,
        perRun: true,
        spec: runSpec(
          `Training loss per run · ${column}`,
          runs,
          palette([...new Set(runs.map((p) => p.row))]),
          lossX,
          'training loss',
        ),
      });
    }
    const metric = groups[0]?.metric;
    const evalX = { title: 'epoch', axis: { tickMinStep: 1, format: 'd' } };
    const evals = metric ? bands(groups, metricExtract(metric)) : [];
    if (evals.length) {
      const scale = palette([...new Set(evals.map((p) => p.row))]);
      figures.push({
        id: `metric-${id}`,
        caption: `Dev-set ${metric} after each epoch on ${column}: mean over seeds, band ${BAND}.`,
        spec: bandSpec(`Dev ${metric} per epoch · ${column}`, evals, scale, evalX, `${metric} × 100 (dev set)`, true),
      });
      const runs = perRun(groups, metricExtract(metric));
      figures.push({
        id: `metric-${id}-runs`,
        caption: `Dev-set ${metric} after each epoch on ${column}, one line per run.`,
        perRun: true,
        spec: runSpec(
          `Dev ${metric} per run · ${column}`,
          runs,
          palette([...new Set(runs.map((p) => p.row))]),
          evalX,
          `${metric} × 100 (dev set)`,
        ),
      });
    }
    const kept = keptPerLayer(groups);
    if (kept.points.length)
      figures.push({
        id: `kept-${id}`,
        caption: `Share of each layer's parameters in the child network (the mask) on ${column}: mean over seeds, error bar ${BAND}.`,
        spec: keptSpec(column, kept, palette([...new Set(kept.points.map((p) => p.row))])),
      });
    const fisher = fisherHistograms(groups);
    if (fisher)
      figures.push({
        id: `fisher-${id}`,
        caption: `Fisher information of the in-scope parameters on ${column} (Child-Tuning-D), log-log: parameters per bin, averaged over seeds; dashed: the selection threshold (geometric mean over seeds). Parameters with zero Fisher information are not on a log axis: ${fisher.thresholds.map((t) => `${t.row}: ${Math.round(t.zeros)}`).join('; ')}.`,
        spec: fisherSpec(column, fisher, palette(fisher.thresholds.map((t) => t.row))),
      });
  }
  if (overlap)
    figures.push({
      id: 'overlap',
      caption:
        'Overlap of the Child-Tuning-D child networks of different tasks (Jaccard index: parameters in both / in either).',
      spec: overlapSpec(overlap),
    });
  return figures;
}

function keptSpec(
  column: string,
  kept: ReturnType<typeof keptPerLayer>,
  scale: ReturnType<ReturnType<typeof colours>>,
): TopLevelSpec {
  const x = { field: 'layer', type: 'nominal', sort: kept.layers, title: 'layer', axis: { labelAngle: -40 } };
  const y = { type: 'quantitative', title: 'kept fraction of the layer', scale: { domain: [0, 1] } };
  return {
    ...base(`Child network per layer · ${column}`),
    data: { values: kept.points },
    encoding: { x, xOffset: { field: 'row', sort: scale.domain }, color: colour(scale) },
    layer: [
      { mark: 'bar', encoding: { y: { field: 'mean', ...y } } },
      {
        mark: { type: 'rule', color: '#333' },
        encoding: { y: { field: 'lo', ...y }, y2: { field: 'hi' }, color: { value: '#333' } },
      },
    ],
  } as TopLevelSpec;
}

function fisherSpec(
  column: string,
  f: NonNullable<ReturnType<typeof fisherHistograms>>,
  scale: ReturnType<ReturnType<typeof colours>>,
): TopLevelSpec {
  const [lo, hi] = f.domain;
  const first = Math.ceil(Math.log10(lo)),
    last = Math.floor(Math.log10(hi)),
    step = Math.ceil((last - first + 1) / 8);
  const xTicks = Array.from({ length: Math.floor((last - first) / step) + 1 }, (_, i) => 10 ** (first + i * step));
  const x = {
    type: 'quantitative',
    scale: { type: 'log', domain: [lo, hi], nice: false },
    title: 'Fisher information (squared gradient, log scale)',
    axis: { values: xTicks, format: '.0e' },
  };
  const counts = f.bars.map((b) => b.count);
  const floor = Math.min(...counts) / 2;
  // A decade of headroom above the tallest bar keeps the threshold labels off the bars.
  const top = Math.max(...counts) * 10 ** (1 + 0.4 * f.thresholds.length);
  const decades = Array.from(
    { length: Math.floor(Math.log10(top)) - Math.ceil(Math.log10(floor)) + 1 },
    (_, i) => 10 ** (Math.ceil(Math.log10(floor)) + i),
  );
  // Short axis titles: Vega sizes the figure by estimated text widths, and a long rotated title pads the top.
  const y = {
    type: 'quantitative',
    scale: { type: 'log', domain: [floor, top] },
    title: 'parameters per bin',
    axis: { values: decades, format: '~s' },
  };
  // Each threshold's label sits inside the plot, on the side of its line with more room.
  const labels = f.thresholds.map((t, i) => {
    const right = Math.log10(t.threshold) > (Math.log10(lo) + Math.log10(hi)) / 2;
    return {
      data: {
        values: [
          { ...t, text: `threshold ${t.threshold.toExponential(2)}${f.thresholds.length > 1 ? ` (${t.row})` : ''}` },
        ],
      },
      mark: { type: 'text', align: right ? 'right' : 'left', dx: right ? -5 : 5, baseline: 'top', fontSize: 12 },
      encoding: {
        x: { field: 'threshold', ...x },
        y: { value: 6 + 16 * i },
        text: { field: 'text' },
        color: colour(scale, false),
      },
    };
  });
  return {
    ...base(`Fisher information · ${column}`),
    layer: [
      {
        data: { values: f.bars },
        mark: { type: 'rect', opacity: f.thresholds.length > 1 ? 0.45 : 0.8 },
        encoding: {
          x: { field: 'from', ...x },
          x2: { field: 'to' },
          y: { field: 'count', ...y },
          y2: { datum: floor },
          color: colour(scale),
        },
      },
      {
        data: { values: f.thresholds },
        mark: { type: 'rule', strokeDash: [6, 3], strokeWidth: 2 },
        encoding: { x: { field: 'threshold', ...x }, color: colour(scale, false) },
      },
      ...labels,
    ],
  } as TopLevelSpec;
}

function overlapSpec(o: { tasks: string[]; matrix: number[][] }): TopLevelSpec {
  const values = o.tasks.flatMap((a, i) =>
    o.tasks.map((b, j) => ({ a, b, v: Number.isNaN(o.matrix[i][j]) ? null : o.matrix[i][j] })),
  );
  const side = Math.min(HEIGHT, 60 * o.tasks.length);
  return {
    ...base('Child-network overlap (Jaccard)'),
    width: side,
    height: side,
    data: { values },
    encoding: {
      x: { field: 'b', type: 'nominal', title: 'task', sort: o.tasks },
      y: { field: 'a', type: 'nominal', title: 'task', sort: o.tasks },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: {
            field: 'v',
            type: 'quantitative',
            scale: { domain: [0, 1], scheme: 'blues' },
            title: 'Jaccard',
            legend: { orient: 'right', direction: 'vertical' },
          },
        },
      },
      {
        mark: { type: 'text', fontSize: 12 },
        encoding: {
          text: { field: 'v', type: 'quantitative', format: '.2f' },
          color: { condition: { test: 'datum.v > 0.6', value: 'white' }, value: 'black' },
        },
      },
    ],
  } as TopLevelSpec;
}
