import { modifiersFromFactories, type ModelModifier, type ModifiersFrom } from '../engine/modules/modifier.js';
import type { UpdateHooks } from '../engine/parallel/hooks.js';
import type { ParamSpec } from '../engine/params.js';
import type { Recipe } from '../recipe/types.generated.js';
import { childTuningDDefinition } from './child-tuning-d/index.js';
import { childTuningFDefinition } from './child-tuning-f/index.js';
import type { Kind, StrategyDefinition } from './definition.js';
import { diffPruningDefinition } from './diff-pruning/index.js';
import { maskTuningDefinition } from './mask-tuning/index.js';
import { mixoutDefinition } from './mixout/index.js';
import { r3fDefinition } from './r3f/index.js';
import { Strategy, type PreparedStrategy } from './strategy.js';
import { vanillaDefinition } from './vanilla/index.js';

/**
 * Every strategy kind: the only place in childtune that chooses by kind. A new kind is its folder
 * (src/strategies/<kind>/: schema.json and index.ts) plus one line here.
 */
export const STRATEGIES: readonly StrategyDefinition[] = [
  vanillaDefinition,
  childTuningFDefinition,
  childTuningDDefinition,
  mixoutDefinition,
  r3fDefinition,
  diffPruningDefinition,
  maskTuningDefinition,
];

export function definitionOf(kind: Kind | string): StrategyDefinition {
  const d = STRATEGIES.find((s) => s.kind === kind);
  if (!d) throw new Error(`no strategy of kind '${kind}' (known: ${STRATEGIES.map((s) => s.kind).join(', ')})`);
  return d;
}

/** The strategy a recipe asks for, prepared from the model's parameters and its extra stages' outputs (D: the child network). */
export function strategyFor(
  recipe: Recipe,
  specs: readonly ParamSpec[],
  childNetwork?: (Uint8Array | undefined)[],
): Strategy {
  const definition = definitionOf(recipe.strategy.kind);
  return new Strategy(definition, definition.prepare({ recipe, options: recipe.strategy, specs, childNetwork }));
}

/** The model modifiers a recipe's strategy asks for (none for vanilla, F and D). */
export const modifiersFor = (options: Recipe['strategy']): ModelModifier[] =>
  definitionOf(options.kind).modifiers?.(options as never) ?? [];

/** A worker thread's modifiers, rebuilt from their plain data with the factories the strategies list. */
export const modifiersFrom: ModifiersFrom = modifiersFromFactories(STRATEGIES.flatMap((s) => s.modifierKinds ?? []));

/** A worker thread's hooks, rebuilt from what the main thread sent (Strategy.message). */
export const hooksFrom = (message: unknown): UpdateHooks => {
  const { kind, prepared } = message as PreparedStrategy;
  return definitionOf(kind).hooks(prepared);
};
