import type { CurvePoint, RunRecord } from './collect.js';
import type { Group, Grouping } from './group.js';
import { meanOf, varianceOf } from './significance.js';

/**
 * The data behind the summary figures, from the shared grouping: per row and x, the mean over seeds and a
 * band of ± one sample standard deviation (a seed run more than once counts once, as the mean of its runs).
 */
export interface BandPoint {
  row: string;
  x: number;
  mean: number;
  lo: number;
  hi: number;
  n: number;
}

export interface RunPoint {
  row: string;
  run: string;
  x: number;
  y: number;
}

type Extract = (p: CurvePoint, run: RunRecord) => { x: number; y: number } | undefined;

/** Mean and band per x over the seeds of one group. */
function band(group: Group, extract: Extract): BandPoint[] {
  const byX = new Map<number, Map<number, number[]>>();
  for (const run of group.runs) {
    for (const p of run.curve) {
      const v = extract(p, run);
      if (!v) continue;
      const seeds = byX.get(v.x) ?? new Map<number, number[]>();
      byX.set(v.x, seeds);
      seeds.set(run.seed, [...(seeds.get(run.seed) ?? []), v.y]);
    }
  }
  return [...byX]
    .sort(([a], [b]) => a - b)
    .map(([x, seeds]) => {
      const ys = [...seeds.values()].map(meanOf);
      const mean = meanOf(ys),
        sd = Math.sqrt(varianceOf(ys));
      return { row: group.row.label, x, mean, lo: mean - sd, hi: mean + sd, n: ys.length };
    });
}

export const groupsOf = (g: Grouping, column: string) =>
  g.rows.map((r) => g.groups.find((x) => x.row.key === r.key && x.column === column)).filter((x): x is Group => !!x);

/** Every run's logged steps can be placed on an epoch axis. */
export const epochAxis = (groups: Group[]) => groups.every((gr) => gr.runs.every((r) => r.stepsPerEpoch !== null));

export function lossExtract(byEpoch: boolean): Extract {
  return (p, run) =>
    p.loss === undefined ? undefined : { x: byEpoch ? p.step / run.stepsPerEpoch! : p.step, y: p.loss };
}

/** The evaluation metric after each epoch, ×100 like the tables. */
export function metricExtract(metric: string): Extract {
  return (p) =>
    p.metrics?.[metric] === undefined || p.epoch === undefined ? undefined : { x: p.epoch, y: 100 * p.metrics[metric] };
}

export const bands = (groups: Group[], extract: Extract) => groups.flatMap((gr) => band(gr, extract));

export function perRun(groups: Group[], extract: Extract): RunPoint[] {
  return groups.flatMap((gr) =>
    gr.runs.flatMap((run) =>
      run.curve
        .map((p) => extract(p, run))
        .filter((v) => !!v)
        .map((v) => ({ row: gr.row.label, run: `${run.dir} (seed ${run.seed})`, x: v!.x, y: v!.y })),
    ),
  );
}

/** Kept fraction per layer: mean and standard deviation over the seeds of each masked group. */
export function keptPerLayer(groups: Group[]): {
  layers: string[];
  points: { row: string; layer: string; mean: number; lo: number; hi: number }[];
} {
  const layers: string[] = [];
  const points = groups.flatMap((gr) => {
    const runs = gr.runs.filter((r) => r.mask && Object.keys(r.mask.per_layer).length);
    if (!runs.length || gr.row.strategy === 'vanilla') return [];
    for (const r of runs) for (const l of Object.keys(r.mask!.per_layer)) if (!layers.includes(l)) layers.push(l);
    return layers
      .filter((l) => runs.some((r) => r.mask!.per_layer[l] !== undefined))
      .map((layer) => {
        const ys = runs.map((r) => r.mask!.per_layer[layer]).filter((v) => v !== undefined);
        const mean = meanOf(ys),
          sd = Math.sqrt(varianceOf(ys));
        return { row: gr.row.label, layer, mean, lo: mean - sd, hi: mean + sd };
      });
  });
  return { layers, points };
}

/**
 * The Fisher histograms of each D group on one grid of log10 bins (each run's bins differ: they span its
 * own range), averaged over runs; and the mean log10 threshold per group.
 */
export function fisherHistograms(groups: Group[], bins = 40) {
  const withFisher = groups
    .map((gr) => ({ gr, runs: gr.runs.filter((r) => r.mask?.fisher && r.mask.fisher.histogram.counts.length) }))
    .filter((x) => x.runs.length);
  const edges = withFisher.flatMap((x) => x.runs.flatMap((r) => r.mask!.fisher!.histogram.log10_edges));
  if (!edges.length) return undefined;
  const lo = Math.min(...edges),
    hi = Math.max(...edges),
    width = (hi - lo) / bins || 1;
  const bars: { row: string; from: number; to: number; count: number }[] = [];
  const thresholds: { row: string; threshold: number; zeros: number }[] = [];
  for (const { gr, runs } of withFisher) {
    const sums = new Array(bins).fill(0);
    for (const r of runs) {
      const h = r.mask!.fisher!.histogram;
      h.counts.forEach((c, i) => {
        const centre = (h.log10_edges[i] + h.log10_edges[i + 1]) / 2;
        sums[Math.min(bins - 1, Math.max(0, Math.floor((centre - lo) / width)))] += c;
      });
    }
    sums.forEach(
      (s, i) =>
        s > 0 &&
        bars.push({
          row: gr.row.label,
          from: 10 ** (lo + i * width),
          to: 10 ** (lo + (i + 1) * width),
          count: s / runs.length,
        }),
    );
    const logT = meanOf(runs.map((r) => Math.log10(r.mask!.fisher!.threshold)));
    thresholds.push({
      row: gr.row.label,
      threshold: 10 ** logT,
      zeros: meanOf(runs.map((r) => r.mask!.fisher!.histogram.zeros)),
    });
  }
  return { bars, thresholds, domain: [10 ** lo, 10 ** hi] as [number, number] };
}
