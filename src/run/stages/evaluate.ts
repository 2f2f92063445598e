import type { StageRunner } from '../walk.js';
import type { Trained } from './train.js';

/** The evaluate stage's output: the final metrics on the evaluation split, and the training they score. */
export interface Evaluated {
  metrics: Record<string, number>;
  trained: Trained;
}

/**
 * The training evaluates the evaluation split after every epoch (to pick the best one); this stage takes
 * the evaluation of the checkpoint the recipe keeps (`evaluation.checkpoint`: the best epoch or the last).
 */
export const evaluateRunner: StageRunner<Evaluated> = {
  run(_stage, [trained], ctx) {
    const { result } = trained as Trained;
    const metrics =
      ctx.recipe.evaluation.checkpoint === 'best'
        ? result.epochs[result.bestEpoch - 1].metrics
        : result.epochs.at(-1)!.metrics;
    return { metrics, trained: trained as Trained };
  },
};
