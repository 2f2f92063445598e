import type { Holes } from './holes.js';
import type { Report } from './report.js';
import type { SourceMap } from './parse.js';
import type { Recipe } from './types.generated.js';

/**
 * Cross-field checks of the training controls: early stopping keeps the best model, the splits evaluated include
 * the one selection reads, and max_steps overrides an epochs the recipe sets.
 */
export function checkTrainingControls(recipe: Recipe, sources: SourceMap, report: Report, guard: Holes['guard']) {
  const { training, evaluation } = recipe;
  guard(
    'early stopping check of evaluation.early_stopping',
    ['/evaluation/early_stopping', '/evaluation/checkpoint'],
    () => {
      if (evaluation.early_stopping && evaluation.checkpoint !== 'best')
        report(
          'CT0105',
          'evaluation.early_stopping needs evaluation.checkpoint: best',
          '/evaluation/early_stopping',
          [
            `Early stopping trains ${evaluation.early_stopping.patience} evaluation(s) past the best one; with checkpoint: last the kept model would be the last, worse one.`,
          ],
          'Add evaluation.checkpoint: best.',
        );
    },
  );
  guard('split checks of evaluation.splits', ['/evaluation/splits', '/dataset/eval_split'], () => {
    const splits = evaluation.splits;
    if (splits && !splits.includes(recipe.dataset.eval_split))
      report(
        'CT0105',
        `evaluation.splits [${splits.join(', ')}] lacks dataset.eval_split '${recipe.dataset.eval_split}'`,
        '/evaluation/splits',
        [
          'The evaluation split is the one the best checkpoint and early stopping are chosen on; the others are scored beside it.',
        ],
        `Use splits: [${[recipe.dataset.eval_split, ...splits].join(', ')}].`,
      );
    const others = splits?.filter((s) => s !== recipe.dataset.eval_split) ?? [];
    if (others.includes(recipe.dataset.train_split))
      report(
        'CT0105',
        `evaluation.splits includes the training split '${recipe.dataset.train_split}'`,
        '/evaluation/splits',
        ['Scores on the data the model trained on say nothing about how it generalises.'],
        `Remove '${recipe.dataset.train_split}' from evaluation.splits.`,
      );
  });
  guard('max_steps check of training.epochs', ['/training/max_steps', '/training/epochs'], () => {
    if (training.max_steps !== undefined && sources.has('/training/epochs'))
      report(
        'CT0303',
        `training.epochs (${training.epochs}) is ignored: training.max_steps (${training.max_steps}) sets the number of steps`,
        '/training/epochs',
        [
          "As in Hugging Face's Trainer, max_steps overrides epochs: the data is reshuffled for each new epoch until the steps are done.",
        ],
        'Remove one of the two.',
        'warning',
      );
  });
}
