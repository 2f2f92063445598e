import { Rng } from '../engine/rng.js';
import { schemaAt } from '../recipe/schema.js';
import type { Recipe } from '../recipe/types.generated.js';

/** One trial of a sweep: the dotted-path overrides applied to the base recipe. */
export interface TrialSpec {
  index: number;
  overrides: Record<string, unknown>;
}

/** Grid points (keys in sorted order, values in written order) times seeds, then random samples. Deterministic. */
export function expandSweep(sweep: Recipe['sweep']): TrialSpec[] {
  if (!sweep) return [{ index: 0, overrides: {} }];
  let points: Record<string, unknown>[] = [{}];
  for (const key of Object.keys(sweep.grid ?? {}).sort()) {
    points = points.flatMap((p) => sweep.grid![key].map((v) => ({ ...p, [key]: v })));
  }
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
  const seeds = sweep.seeds ?? [undefined];
  const trials: TrialSpec[] = [];
  for (const p of points) {
    for (const seed of seeds)
      trials.push({ index: trials.length, overrides: seed === undefined ? p : { ...p, 'training.seed': seed } });
  }
  return trials;
}
