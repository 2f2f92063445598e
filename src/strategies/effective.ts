import { sizeOf, trains, type ParamSpec } from '../engine/params.js';
import type { ChildTuning } from '../recipe/types.generated.js';
import type { StrategyOptions } from './definition.js';
import { inScope, type Scope } from './scope.js';

/** Child-Tuning's keep fraction and scope in a strategy, wherever it is set: F, D, or child_tuning in another kind. */
export function childShare(options: StrategyOptions): { p: number; scope: Scope } | undefined {
  const o = options as {
    kind: string;
    reserve_p?: number;
    scope?: Scope;
    fisher?: { scope?: Scope };
    child_tuning?: ChildTuning;
  };
  if (o.kind === 'child-tuning-f') return { p: o.reserve_p!, scope: o.scope ?? 'all' };
  if (o.kind === 'child-tuning-d') return { p: o.reserve_p!, scope: o.fisher?.scope ?? 'encoder' };
  const ct = o.child_tuning;
  return ct && { p: ct.reserve_p, scope: ct.scope ?? 'encoder' };
}

/**
 * The parameters a strategy updates in effect, where Child-Tuning masks its tensors (undefined elsewhere): the
 * trained tensors out of its scope whole, those in scope at reserve_p (D's child network is the top round(p n) of
 * them; F keeps p n a step on average). Every tensor still receives updates, so the trainable count alone puts
 * D and F at 100%. `trained`: per tensor, whether the strategy trains it (the specs' own flag by default).
 */
export function effectiveTrainable(
  options: StrategyOptions,
  specs: readonly ParamSpec[],
  trained: readonly boolean[] = specs.map(trains),
): number | undefined {
  const share = childShare(options);
  if (!share) return undefined;
  let whole = 0;
  let scoped = 0;
  specs.forEach((s, i) => {
    if (!trained[i]) return;
    if (inScope(s, share.scope)) scoped += sizeOf(s);
    else whole += sizeOf(s);
  });
  return whole + Math.round(Math.min(1, share.p) * scoped);
}
