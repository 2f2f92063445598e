import type { Recipe } from './types.generated.js';

/** The strategy kind a sweep point's overrides give a trial: a swept kind or strategy block, else the recipe's own. */
export function kindOf(overrides: Record<string, unknown>, baseKind: string): string {
  if (typeof overrides['strategy.kind'] === 'string') return overrides['strategy.kind'];
  const block = overrides.strategy as { kind?: unknown } | undefined;
  if (block && typeof block === 'object') return typeof block.kind === 'string' ? block.kind : 'vanilla';
  return baseKind;
}

/** Every strategy kind a sweep's trials can have (per_strategy settings for another kind apply to no trial). */
export function sweptKinds(sweep: NonNullable<Recipe['sweep']>, baseKind: string): Set<string> {
  const sources = [
    sweep.grid ?? {},
    ...(sweep.random ? [sweep.random.space as Record<string, { values?: unknown[] }>] : []),
  ];
  const kinds = new Set<string>();
  let swept = false;
  for (const source of sources)
    for (const key of ['strategy', 'strategy.kind']) {
      const raw = source[key];
      const values = Array.isArray(raw) ? raw : (raw as { values?: unknown[] } | undefined)?.values;
      if (!values) continue;
      swept = true;
      for (const v of values) kinds.add(kindOf({ [key]: v }, baseKind));
    }
  if (!swept) kinds.add(baseKind);
  return kinds;
}

/** The most trials one sweep point's per_strategy settings make (1 when there are none). */
export const perStrategyFactor = (sweep: Recipe['sweep']) =>
  Math.max(
    1,
    ...Object.values(sweep?.per_strategy ?? {}).map((axes) =>
      Object.values(axes).reduce((n, values) => n * values.length, 1),
    ),
  );
