import { modifiersFromFactories, type ModelModifier, type ModifiersFrom } from '../engine/modules/modifier.js';
import type { UpdateHooks } from '../engine/parallel/hooks.js';
import type { ParamSpec } from '../engine/params.js';
import type { Recipe } from '../recipe/types.generated.js';
import { adapterDefinition } from './adapter/index.js';
import { bitfitDefinition } from './bitfit/index.js';
import { childTuningDDefinition } from './child-tuning-d/index.js';
import { childTuningFDefinition } from './child-tuning-f/index.js';
import type { Kind, StrategyDefinition } from './definition.js';
import { diffPruningDefinition } from './diff-pruning/index.js';
import { maskTuningDefinition } from './mask-tuning/index.js';
import { mixoutDefinition } from './mixout/index.js';
import { r3fDefinition } from './r3f/index.js';
import { prefixTuningDefinition } from './prefix-tuning/index.js';
import { promptTuningDefinition } from './prompt-tuning/index.js';
import { recAdamDefinition } from './recadam/index.js';
import { topKLayersDefinition } from './top-k-layers/index.js';
import { loraDefinition } from './lora/index.js';
import {
  childTuningOf,
  composedStages,
  checkChildTuning,
  innerDefinition,
  maskedTensors,
  prepareInner,
} from './compose.js';
import type { StageContext } from './definition.js';
import type { Diagnostic } from '../recipe/diagnostics.js';
import { hooksOf, Strategy, type PreparedStrategy } from './strategy.js';
import { vanillaDefinition } from './vanilla/index.js';
import { weightDecayToPretrainedDefinition } from './weight-decay-to-pretrained/index.js';

/**
 * Every strategy kind: the only place in childtune that chooses by kind. A new kind is its folder
 * (src/strategies/<kind>/: schema.json and index.ts) plus one line here.
 */
export const STRATEGIES: readonly StrategyDefinition[] = [
  vanillaDefinition,
  childTuningFDefinition,
  childTuningDDefinition,
  bitfitDefinition,
  topKLayersDefinition,
  weightDecayToPretrainedDefinition,
  recAdamDefinition,
  loraDefinition,
  adapterDefinition,
  prefixTuningDefinition,
  promptTuningDefinition,
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
  steps?: { perEpoch: number; total: number },
): Strategy {
  const definition = definitionOf(recipe.strategy.kind);
  const ct = childTuningOf(recipe.strategy);
  if (!ct)
    return new Strategy(
      definition,
      definition.prepare({ recipe, options: recipe.strategy, specs, childNetwork, steps }),
    );
  // Child-Tuning inside the strategy's trainable set: the outer kind is prepared without the child network (it is D's).
  const prepared = definition.prepare({ recipe, options: recipe.strategy, specs, steps });
  const masked = maskedTensors(specs, definition.hooks(prepared), ct.scope);
  return new Strategy(definition, prepared, {
    definition: innerDefinition(ct),
    prepared: prepareInner(recipe, ct, masked, childNetwork),
  });
}

/** Per tensor: whether the recipe's Child-Tuning (D, or D inside another strategy) scores it in the fisher pass. */
export function fisherScope(recipe: Recipe, specs: readonly ParamSpec[], scope: 'all' | 'encoder'): boolean[] {
  const definition = definitionOf(recipe.strategy.kind);
  if (!childTuningOf(recipe.strategy)) return specs.map((s) => scope === 'all' || s.group === 'encoder');
  return maskedTensors(specs, definition.hooks(definition.prepare({ recipe, options: recipe.strategy, specs })), scope);
}

/** The stages a recipe's strategy needs before training: its kind's own, and D's fisher pass when D runs inside it. */
export function stagesFor(recipe: Recipe, context: StageContext) {
  const ct = childTuningOf(recipe.strategy);
  const own = definitionOf(recipe.strategy.kind).stages?.(recipe.strategy as never, recipe, context) ?? [];
  return ct ? [...own, ...composedStages(recipe, ct, context)] : own;
}

/** Diagnostics no schema can express: its kind's own, and those of a child_tuning block. */
export function checksFor(options: Recipe['strategy']): Diagnostic[] {
  const ct = childTuningOf(options);
  return [...(definitionOf(options.kind).check?.(options as never) ?? []), ...(ct ? checkChildTuning(ct) : [])];
}

/** The model modifiers a recipe's strategy asks for (none for vanilla, F and D). */
export const modifiersFor = (options: Recipe['strategy']): ModelModifier[] =>
  definitionOf(options.kind).modifiers?.(options as never) ?? [];

/** Whether a recipe's strategy reads the pretrained anchor (the engine then keeps a copy of the weights as loaded). */
export const anchorFor = (options: Recipe['strategy']): boolean =>
  definitionOf(options.kind).anchor?.(options as never) ?? false;

/** A worker thread's modifiers, rebuilt from their plain data with the factories the strategies list. */
export const modifiersFrom: ModifiersFrom = modifiersFromFactories(STRATEGIES.flatMap((s) => s.modifierKinds ?? []));

/** A worker thread's hooks, rebuilt from what the main thread sent (Strategy.message). */
export const hooksFrom = (message: unknown): UpdateHooks => {
  const { kind, prepared, childTuning } = message as PreparedStrategy;
  const inner = childTuning && { definition: definitionOf(childTuning.kind), prepared: childTuning.prepared };
  return hooksOf(definitionOf(kind), prepared, inner);
};
