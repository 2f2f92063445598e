import path from 'node:path';
import { computeMetrics, confusionMatrix } from '../../data/metrics.js';
import { labelNamesOf, taskSpecOf, type Metric } from '../../data/tasks.js';
import { logitsOf, predictionOf } from '../evaluate.js';
import { predictionsTsv } from '../predictions.js';
import { makeDir } from '../rundir.js';
import type { StageRunner } from '../walk.js';
import type { Trained } from './train.js';

/** Where a run keeps the kept model's prediction of every evaluation example. */
const DEV_PREDICTIONS = 'predictions/dev.tsv';

/** What the kept model predicts on the evaluation split, beside what always answering the majority class scores. */
export interface Predictions {
  /** Predictions per class name, on the evaluation split. */
  predicted_classes: Record<string, number>;
  /** The model answered one class for every example: its score is the majority class's, not a learned one. */
  single_class_prediction: boolean;
  /** The training split's most frequent class, predicted for every evaluation example, scored by the run's metrics. */
  majority_baseline: { class: string; metrics: Record<string, number> };
  /** Counts of evaluation examples by gold class (rows) and predicted class (columns), both in `labels`' order. */
  confusion_matrix: { labels: string[]; matrix: number[][] };
}

/** The evaluate stage's output: the final metrics on the evaluation split, and the training they score. */
export interface Evaluated {
  metrics: Record<string, number>;
  /** The kept evaluation's scores on the other splits of evaluation.splits (test beside dev), by split name. */
  splits?: Record<string, Record<string, number>>;
  trained: Trained;
  /** Classification tasks only. */
  predictions?: Predictions;
}

/**
 * The training evaluates the evaluation split after every epoch or every N steps (to pick the best one); this stage
 * takes the evaluation of the checkpoint the recipe keeps (`evaluation.checkpoint`: the best evaluation or the
 * last), writes that model's prediction of every evaluation example (predictions/dev.tsv), and checks that it
 * predicts more than one class: a small model at a low learning rate often learns the majority class only, with a
 * score that looks like a result.
 */
export const evaluateRunner: StageRunner<Evaluated> = {
  async run(_stage, [trained], ctx) {
    const { result, loaded, train, dev } = trained as Trained;
    const { recipe, run } = ctx;
    const { metrics, splits } = result.epochs[result.selected];
    const out: Evaluated = { metrics, ...(splits && { splits }), trained: trained as Trained };
    const numLabels = loaded.model.numLabels;
    const logits = await logitsOf(
      loaded.parallel,
      numLabels,
      dev.encodings,
      recipe.evaluation.batch_size,
      loaded.tokenizer.padId,
    );
    makeDir(path.dirname(run.path(DEV_PREDICTIONS)), 'predictions directory');
    run.writeText(
      DEV_PREDICTIONS,
      predictionsTsv(
        logits.map((l, i) => ({ index: i, line: dev.lines[i], gold: dev.labels[i], logits: l })),
        taskSpecOf(recipe.dataset).labels,
      ),
    );
    if (numLabels < 2 || !dev.labels.length) return out;
    const names = labelNamesOf(recipe.dataset) ?? Array.from({ length: numLabels }, (_, i) => String(i));
    const pred = logits.map(predictionOf);
    const counts = new Array<number>(numLabels).fill(0);
    for (const p of pred) counts[p]++;
    const trainCounts = new Array<number>(numLabels).fill(0);
    for (const l of train.labels) trainCounts[l]++;
    const majority = trainCounts.indexOf(Math.max(...trainCounts));
    const scored = (recipe.evaluation.metrics ?? taskSpecOf(recipe.dataset).metrics) as Metric[];
    const single = counts.filter((c) => c > 0).length === 1;
    out.predictions = {
      predicted_classes: Object.fromEntries(names.map((n, i) => [n, counts[i]])),
      single_class_prediction: single,
      majority_baseline: {
        class: names[majority],
        metrics: computeMetrics(scored, new Array<number>(dev.labels.length).fill(majority), dev.labels),
      },
      confusion_matrix: { labels: names, matrix: confusionMatrix(pred, dev.labels, numLabels) },
    };
    if (single)
      ctx.report.log(
        `warning: the model predicts '${names[counts.findIndex((c) => c > 0)]}' for all ${pred.length} evaluation examples: its score is a constant answer's (the majority class '${names[majority]}' scores ${Object.entries(
          out.predictions.majority_baseline.metrics,
        )
          .map(([k, v]) => `${k} ${v.toFixed(4)}`)
          .join(', ')}); try a higher learning rate or more epochs`,
      );
    return out;
  },
};
