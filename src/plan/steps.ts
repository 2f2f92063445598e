import type { Recipe } from '../recipe/types.generated.js';

/**
 * Optimizer steps per epoch over n examples: its batches, grouped by training.accumulate (an epoch's last group
 * may hold fewer batches, as its last batch may hold fewer examples).
 */
export const stepsPerEpoch = (n: number, t: Recipe['training']) =>
  Math.ceil(Math.ceil(n / t.batch_size) / (t.accumulate ?? 1));

/** Optimizer steps of the whole training over n examples: training.max_steps overrides epochs, as in Hugging Face's Trainer. */
export const totalSteps = (n: number, t: Recipe['training']) =>
  t.max_steps ?? Math.ceil(stepsPerEpoch(n, t) * t.epochs);

/** How many times the training evaluates: after each epoch begun, or every evaluation.every_steps steps and after the last. */
export function evaluationCount(n: number, r: Recipe): number {
  const total = totalSteps(n, r.training);
  const every = r.evaluation.every_steps;
  return every ? Math.floor((total - 1) / every) + 1 : Math.ceil(total / stepsPerEpoch(n, r.training));
}
