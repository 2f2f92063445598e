import { match } from 'ts-pattern';
import type { GradientHook } from '../engine/optimizer.js';
import type { ParamSpec } from '../engine/params.js';
import { Rng } from '../engine/rng.js';
import type { Recipe } from '../recipe/types.generated.js';
import { getBit, popcount } from './bitset.js';

export type Scope = 'all' | 'encoder';
export const inScope = (spec: ParamSpec, scope: Scope) => scope === 'all' || spec.group === 'encoder';

/** A fine-tuning strategy: how each step's gradient is masked, plus what it reports about its masks. */
export interface Strategy extends GradientHook {
  readonly kind: Recipe['strategy']['kind'];
  /** Kept fraction per parameter tensor, measured over the run so far. */
  keptFractions(specs: readonly ParamSpec[]): Record<string, number>;
  /** Generator state to checkpoint (F), if any. */
  rngState?(): number[];
}

export const vanilla = (): Strategy => ({
  kind: 'vanilla',
  maskGradient() {},
  keptFractions: (specs) => Object.fromEntries(specs.map((s) => [s.name, 1])),
});

/**
 * Child-Tuning-F: each step, each in-scope gradient element is kept with probability p and divided by p
 * (an unbiased estimate with higher variance). The mask is streamed from a seeded xoshiro generator straight
 * into the gradient, never materialised.
 */
export function childTuningF(p: number, scope: Scope, seed: number, state?: number[]): Strategy {
  const rng = state ? new Rng(state) : new Rng(seed);
  const kept = new Map<number, { kept: number; total: number }>();
  return {
    kind: 'child-tuning-f',
    maskGradient(i, grad, spec) {
      if (!inScope(spec, scope) || p >= 1) return;
      const k = rng.bernoulliScaleInPlace(grad, p);
      const s = kept.get(i) ?? { kept: 0, total: 0 };
      s.kept += k;
      s.total += grad.length;
      kept.set(i, s);
    },
    keptFractions: (specs) => Object.fromEntries(specs.map((s, i) => [s.name, kept.has(i) ? kept.get(i)!.kept / kept.get(i)!.total : 1])),
    rngState: () => rng.state,
  };
}

/** Child-Tuning-D: a fixed bitset per in-scope tensor; gradients outside the child network are zeroed, never rescaled. */
export function childTuningD(masks: (Uint8Array | undefined)[], maskWeightDecay: boolean): Strategy {
  return {
    kind: 'child-tuning-d',
    maskGradient(i, grad) {
      const bits = masks[i];
      if (!bits) return;
      for (let j = 0; j < grad.length; j++) if (!getBit(bits, j)) grad[j] = 0;
    },
    decayMask: maskWeightDecay ? (i) => masks[i] : undefined,
    keptFractions: (specs) =>
      Object.fromEntries(specs.map((s, i) => {
        const bits = masks[i];
        if (!bits) return [s.name, 1];
        const n = s.shape.reduce((a, b) => a * b, 1);
        return [s.name, popcount(bits, n) / n];
      })),
  };
}

/** The strategy a recipe asks for; D's masks come from the fisher stage. */
export function strategyFor(recipe: Recipe, masks?: (Uint8Array | undefined)[], fState?: number[]): Strategy {
  const s = recipe.strategy;
  return match(s.kind)
    .with('vanilla', () => vanilla())
    .with('child-tuning-f', () => childTuningF(s.reserve_p!, s.scope ?? 'all', recipe.training.seed ^ 0x5eed, fState))
    .with('child-tuning-d', () => childTuningD(masks!, s.mask_weight_decay))
    .exhaustive();
}
