import type { UpdateHooks } from '../engine/parallel/hooks.js';
import type { StrategyHooks } from './definition.js';

/**
 * The outer strategy's hooks with Child-Tuning's mask after its own transform: the kept count is the mask's where
 * it applies; D's bitsets and weight-decay mask come from D, everything else (trains, loss terms, modifiers) from
 * the outer kind.
 */
export function composeHooks(outer: StrategyHooks, inner: UpdateHooks): StrategyHooks {
  return {
    ...outer,
    kind: `${outer.kind}+${inner.kind}`,
    fixedBits: inner.fixedBits ?? outer.fixedBits,
    decayMask: inner.decayMask ?? outer.decayMask,
    transform: {
      apply(index, grad, lo, hi, step, passes, bits) {
        const own = outer.transform ? outer.transform.apply(index, grad, lo, hi, step, passes, bits) : hi - lo;
        const kept = inner.transform!.apply(index, grad, lo, hi, step, passes, bits);
        return Math.min(own, kept);
      },
      device:
        inner.transform?.device && (!outer.transform || outer.transform.device)
          ? (index, size, step) => [
              ...(outer.transform?.device?.(index, size, step) ?? []),
              ...inner.transform!.device!(index, size, step),
            ]
          : undefined,
    },
  };
}
