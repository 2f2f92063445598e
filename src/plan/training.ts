import { diagnostic, type Diagnostic } from '../recipe/diagnostics.js';
import type { LoadedRecipe } from '../recipe/index.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { Work } from './stages.js';
import { evaluationCount, stepsPerEpoch, totalSteps } from './steps.js';

/** The splits of evaluation.splits other than the evaluation split, in the order the recipe lists them. */
export const otherSplits = (r: Recipe) => (r.evaluation.splits ?? []).filter((s) => s !== r.dataset.eval_split);

/** The train stage's work over n training examples: its steps, how it batches them and how often it evaluates. */
export function trainWork(r: Recipe, n: number): Work {
  const { accumulate, max_steps } = r.training;
  const others = otherSplits(r);
  return {
    examples: n,
    epochs: max_steps ? max_steps / stepsPerEpoch(n, r.training) : r.training.epochs,
    steps: totalSteps(n, r.training),
    ...(accumulate && accumulate > 1 && { accumulate }),
    ...(max_steps && { max_steps: true }),
    evaluations: evaluationCount(n, r),
    ...(r.evaluation.every_steps && { every_steps: r.evaluation.every_steps }),
    ...(r.evaluation.early_stopping && { patience: r.evaluation.early_stopping.patience }),
    ...(others.length ? { splits: others } : {}),
  };
}

/**
 * Checks of the training settings that need the training set's size (the recipe's own checks cannot know it):
 * a step that would accumulate more batches than an epoch has.
 */
export function trainingChecks(r: Recipe, n: number, loaded: LoadedRecipe): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (pointer: string) => loaded.composed?.sources.get(pointer);
  const { accumulate = 1, batch_size } = r.training;
  const batches = Math.ceil(n / batch_size);
  if (accumulate > batches)
    out.push(
      diagnostic(
        'CT0106',
        `training.accumulate is ${accumulate}, but an epoch has only ${batches} batch${batches === 1 ? '' : 'es'} of ${batch_size} (${n} training examples): every step would average a whole epoch`,
        '/training/accumulate',
        {
          location: at('/training/accumulate'),
          suggestion: `Use accumulate: ${batches} or less, or a smaller training.batch_size.`,
        },
      ),
    );
  return out;
}
