import { Rng } from '../engine/rng.js';
import { schemaAt } from '../recipe/schema.js';
import { kindOf } from '../recipe/sweep-kinds.js';
import type { Recipe } from '../recipe/types.generated.js';

/** One trial of a sweep: the dotted-path overrides applied to the base recipe. */
export interface TrialSpec {
  index: number;
  overrides: Record<string, unknown>;
  /** The overrides that came from sweep.per_strategy: settings of the trial's strategy, not of the comparison. */
  strategySettings: string[];
}

/** Every combination of the given dotted paths' values (keys in sorted order, values in written order). */
function combinations(axes: Record<string, unknown[]>, from: Record<string, unknown>[]): Record<string, unknown>[] {
  let points = from;
  for (const key of Object.keys(axes).sort())
    points = points.flatMap((p) => axes[key].map((v) => ({ ...p, [key]: v })));
  return points;
}

/**
 * Grid points (keys in sorted order, values in written order), then random samples, then each point's strategy's
 * per_strategy settings, times seeds. Deterministic.
 */
export function expandSweep(sweep: Recipe['sweep'], baseKind = 'vanilla'): TrialSpec[] {
  if (!sweep) return [{ index: 0, overrides: {}, strategySettings: [] }];
  let points = combinations(sweep.grid ?? {}, [{}]);
  if (sweep.random) {
    const rng = new Rng(sweep.random.seed ?? 0);
    const keys = Object.keys(sweep.random.space).sort();
    const sampled: Record<string, unknown>[] = [];
    for (let t = 0; t < sweep.random.trials; t++) {
      for (const p of points) {
        const q = { ...p };
        for (const key of keys) {
          const dim = sweep.random.space[key];
          if (dim.values) q[key] = dim.values[rng.int(dim.values.length)];
          else {
            const lo = dim.min ?? 0;
            const hi = dim.max ?? 1;
            const u = rng.next();
            let v = dim.log ? Math.exp(Math.log(lo) + u * (Math.log(hi) - Math.log(lo))) : lo + u * (hi - lo);
            if (schemaAt(key.split('.'))?.type === 'integer') v = Math.round(v);
            q[key] = v;
          }
        }
        sampled.push(q);
      }
    }
    points = sampled;
  }
  const own = (p: Record<string, unknown>) => sweep.per_strategy?.[kindOf(p, baseKind)] ?? {};
  points = points.flatMap((p) => combinations(own(p), [p]));
  const seeds = sweep.seeds ?? [undefined];
  const trials: TrialSpec[] = [];
  for (const p of points) {
    const strategySettings = Object.keys(own(p)).sort();
    for (const seed of seeds)
      trials.push({
        index: trials.length,
        overrides: seed === undefined ? p : { ...p, 'training.seed': seed },
        strategySettings,
      });
  }
  return trials;
}
