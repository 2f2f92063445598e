import { labelNamesOf } from '../../data/tasks.js';
import { saveModel } from '../../engine/save.js';
import { writeResults } from '../artifacts.js';
import { stepsPerEpoch } from '../../plan/steps.js';
import type { StageRunner } from '../walk.js';
import type { Evaluated } from './evaluate.js';
import { transferTargets, type Transferred } from './transfer.js';

/**
 * The report stage, for one trial: the fine-tuned model saved for `from_pretrained` and results.json
 * written (the aggregate over trials is `childtune report`). Its output is results.json's content.
 */
export const reportRunner: StageRunner = {
  run(_stage, _deps, ctx) {
    const { recipe, trial, run } = ctx;
    const { metrics, splits, trained, predictions } = ctx.outputs.get(trial.evaluate) as Evaluated;
    const { loaded, result, fisher, resumedFromStep, strategy } = trained;
    const kept = result.epochs[result.selected];
    const { model } = loaded;
    // A strategy that adds parameters says how they are saved (merged, or apart in its own layout).
    const saved = strategy.definition.save?.({
      options: recipe.strategy,
      config: model.config,
      specs: model.specs,
      values: model.values,
      modelDir: loaded.modelDir,
    });
    saveModel(model, run.path('model'), {
      source: loaded.modelDir,
      labels: labelNamesOf(recipe.dataset),
      ...(saved && { weights: saved.weights, files: saved.files }),
    });
    const transfer = Object.fromEntries(
      transferTargets(ctx).map((t) => [`${t.mode}/${t.name}`, (ctx.outputs.get(t.stage) as Transferred).metrics]),
    );
    const results = {
      trial: trial.index,
      overrides: trial.overrides,
      ...(trial.strategySettings && { strategy_settings: trial.strategySettings }),
      task: recipe.dataset.task,
      ...strategy.report(recipe.strategy).results,
      ...strategy.trainable(loaded.model.specs, recipe.strategy),
      seed: recipe.training.seed,
      backend: ctx.runtime.backend,
      backend_skipped: ctx.backendSkipped,
      ...(ctx.device && {
        device: {
          vendor: ctx.device.vendor,
          architecture: ctx.device.architecture,
          device: ctx.device.device,
          description: ctx.device.description,
          software: ctx.device.software,
        },
      }),
      threads: ctx.runtime.threads,
      ...(ctx.kernels && {
        kernels: {
          kernel: ctx.kernels.kernel,
          arithmetic: ctx.kernels.arithmetic,
          why: ctx.kernels.why,
          ...(trained.kernelsResumedFrom && { resumed_from: trained.kernelsResumedFrom }),
        },
      }),
      metrics,
      ...predictions,
      epochs: result.epochs,
      best_epoch: result.bestEpoch,
      selected: {
        step: kept.step!,
        epoch: kept.epoch,
        by: result.selectedBy,
        split: recipe.dataset.eval_split,
        metric: Object.keys(metrics)[0],
      },
      ...(splits && { split_metrics: splits }),
      stopped_early_at_step: result.stoppedAt ?? null,
      steps: result.steps,
      steps_per_epoch: stepsPerEpoch(trained.train.encodings.length, recipe.training),
      skipped_steps: result.skippedSteps,
      final_loss: result.finalLoss,
      transfer,
      durations_s: { ...ctx.durations },
      resumed_from_step: resumedFromStep,
      hashes: { recipe: trial.recipeHash, train: ctx.stageOf(trial.train).hash, fisher: fisher?.hash ?? null },
    };
    writeResults(run.path('results.json'), results);
    run.remove('error.json');
    return results;
  },
};
