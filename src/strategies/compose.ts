import { trains, type ParamSpec } from '../engine/params.js';
import { streamSeed } from '../engine/rng.js';
import type { UpdateHooks } from '../engine/parallel/hooks.js';
import { diagnostic, type Diagnostic } from '../recipe/diagnostics.js';
import type { ChildTuning, Recipe } from '../recipe/types.generated.js';
import { childTuningDDefinition, type PreparedD } from './child-tuning-d/index.js';
import { resolvedFisher, type ResolvedFisher } from './child-tuning-d/fisher-settings.js';
import { childTuningFDefinition, fResolution, type PreparedF } from './child-tuning-f/index.js';
import type { ExtraStage, StageContext, StrategyDefinition, StrategyOptions } from './definition.js';
import { inScope, STREAMS } from './strategy.js';

/**
 * Child-Tuning inside another strategy's trainable set (`strategy.child_tuning`, on every kind but vanilla and
 * Child-Tuning's own): the outer kind decides what trains (its modifiers' spec.trainable and its hooks' `trains`),
 * and F's random mask or D's fixed child network applies to those of its tensors within `child_tuning.scope`. D's
 * Fisher pass runs on the model as the outer kind modifies it, over the same tensors. Nothing here knows the outer
 * kind: it composes hooks.
 */
export const childTuningOf = (options: StrategyOptions): ChildTuning | undefined =>
  (options as { child_tuning?: ChildTuning }).child_tuning;

/** The Child-Tuning definition a child_tuning block names. */
export const innerDefinition = (ct: ChildTuning): StrategyDefinition =>
  ct.kind === 'child-tuning-f' ? childTuningFDefinition : childTuningDDefinition;

/** Per tensor: trained by the outer strategy and within the scope, so covered by the mask. */
export const maskedTensors = (specs: readonly ParamSpec[], outer: UpdateHooks, scope: ChildTuning['scope']) =>
  specs.map((s, i) => trains(s) && (!outer.trains || outer.trains[i]) && inScope(s, scope));

/** D's Fisher settings inside another strategy: the child_tuning block's fisher, its scope child_tuning.scope. */
export const composedFisher = (recipe: Recipe, ct: ChildTuning): ResolvedFisher => ({
  ...resolvedFisher({ ...recipe, strategy: { kind: 'child-tuning-d', ...ct.fisher } } as Recipe),
  scope: ct.scope,
});

/** The plain data of the Child-Tuning part, prepared over the outer strategy's tensors. */
export function prepareInner(
  recipe: Recipe,
  ct: ChildTuning,
  masked: boolean[],
  childNetwork?: (Uint8Array | undefined)[],
): PreparedF | PreparedD {
  if (ct.kind === 'child-tuning-f')
    return { p: ct.reserve_p, scoped: masked, seed: streamSeed(recipe.training.seed, STREAMS.fMask), replay: false };
  if (!childNetwork) throw new Error("child_tuning: child-tuning-d is prepared from the fisher stage's child network");
  return { masks: childNetwork, maskWeightDecay: ct.mask_weight_decay };
}

/**
 * D's fisher stage inside another strategy: D's own, with the outer strategy's options and the seed its added
 * parameters are initialised from in its hash (the pass runs on the modified model).
 */
export function composedStages(recipe: Recipe, ct: ChildTuning, context: StageContext): ExtraStage[] {
  if (ct.kind !== 'child-tuning-d') return [];
  const asD = {
    ...recipe,
    strategy: { kind: 'child-tuning-d', reserve_p: ct.reserve_p, fisher: composedFisher(recipe, ct) },
  } as Recipe;
  return childTuningDDefinition.stages!(asD.strategy as never, asD, context).map((s) => ({
    ...s,
    inputs: { ...s.inputs, strategy: recipe.strategy, init_seed: recipe.training.seed },
    label: `${s.label} inside ${recipe.strategy.kind}`,
  }));
}

/** Options of a child_tuning block that its kind does not read (reported, never silently ignored). */
export function checkChildTuning(ct: ChildTuning): Diagnostic[] {
  const at = '/strategy/child_tuning';
  if (ct.kind === 'child-tuning-f') {
    const resolution = fResolution(ct.reserve_p, `${at}/reserve_p`);
    if (resolution.length) return resolution;
  }
  if (ct.kind === 'child-tuning-f' && ct.fisher)
    return [diagnostic('CT0303', 'child_tuning.fisher applies only to child-tuning-d', `${at}/fisher`)];
  if (ct.fisher?.scope !== undefined && ct.fisher.scope !== ct.scope)
    return [
      diagnostic(
        'CT0303',
        `child_tuning.fisher.scope (${ct.fisher.scope}) differs from child_tuning.scope (${ct.scope}), which decides inside another strategy`,
        `${at}/fisher/scope`,
        { suggestion: `Set child_tuning.scope: ${ct.fisher.scope} and drop fisher.scope.` },
      ),
    ];
  return [];
}
