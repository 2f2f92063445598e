import fs from 'node:fs';
import { taskSpecOf, type Metric } from '../../data/tasks.js';
import { arithmeticOf, type KernelChoice } from '../../engine/native.js';
import type { ParamSpec } from '../../engine/params.js';
import { otherSplits } from '../../plan/training.js';
import { perLayer } from '../../strategies/fisher.js';
import { strategyFor } from '../../strategies/registry.js';
import type { Strategy } from '../../strategies/strategy.js';
import { writeMaskStats } from '../artifacts.js';
import { readCheckpoint, writeCheckpoint, type TrainingCheckpoint } from '../checkpoint.js';
import { writeChildMask } from '../child-mask.js';
import type { PreparedSplit } from '../data.js';
import { RunError } from '../errors.js';
import type { ChildNetwork } from '../fisher-stage.js';
import { fMaskLogFor } from '../fmasks.js';
import type { Reporter } from '../reporter.js';
import type { RunDir } from '../rundir.js';
import { TensorBoardWriter } from '../tensorboard.js';
import { stepsPerEpoch, totalSteps } from '../../plan/steps.js';
import { trainModel } from '../train.js';
import { depsOfKind, type StageRunner } from '../walk.js';
import type { LoadedModel } from './load-model.js';

/** The train stage's output: the trained model (still loaded) and how the training went. */
export interface Trained {
  loaded: LoadedModel;
  result: Awaited<ReturnType<typeof trainModel>>;
  strategy: Strategy;
  fisher?: ChildNetwork;
  resumedFromStep: number | null;
  /** The kernel of the checkpoint a resume continued, where its arithmetic differs from this run's. */
  kernelsResumedFrom?: string;
  /** The splits it trained on and evaluated, for the evaluate stage's look at the predictions. */
  train: PreparedSplit;
  dev: PreparedSplit;
}

export const trainRunner: StageRunner<Trained> = {
  async run(stage, deps, ctx) {
    // The plan lists the model, the training and the evaluation data first, then the other splits evaluated;
    // pre-stages follow, found by kind.
    const [loaded, train, dev] = deps as [LoadedModel, PreparedSplit, PreparedSplit];
    const others = otherSplits(ctx.recipe).map((name, i) => ({ name, split: deps[3 + i] as PreparedSplit }));
    const [fisher] = depsOfKind<ChildNetwork>(stage, deps, ctx, 'fisher');
    const { recipe, run, report, trial } = ctx;
    const { model, parallel, tokenizer } = loaded;
    const { backend, threads } = ctx.runtime;
    const resume = ctx.resume
      ? resumePoint(
          run,
          model.specs,
          { recipeHash: trial.recipeHash, backend, threads, fisherHash: fisher?.hash, kernels: ctx.kernels },
          ctx.force,
          report,
        )
      : undefined;
    if (resume) {
      resume.values.forEach((v, i) => model.values[i].set(v));
      await parallel.reload();
      parallel.restoreMoments(resume.m, resume.v, resume.meta.adamStep);
    }
    // The child network itself, in checkpoint order, for `childtune report`'s overlap matrix and other tools.
    if (fisher) writeChildMask(run, model.specs, fisher.masks);
    const examples = train.encodings.length;
    const strategy = strategyFor(recipe, model.specs, fisher?.masks, {
      perEpoch: stepsPerEpoch(examples, recipe.training),
      total: totalSteps(examples, recipe.training),
    });
    strategy.masks = fMaskLogFor(recipe, strategy, model.specs, run, resume?.meta.adamStep ?? 0);
    const metrics = (recipe.evaluation.metrics ?? taskSpecOf(recipe.dataset).metrics) as Metric[];
    const tensorboard = TensorBoardWriter.create(run.path('tb'), run.path('metrics.jsonl'));
    const bar = report.stage('train', stage.work?.steps ?? 1);
    if (resume) bar.tick(resume.meta.loop.step);
    const result = await trainModel({
      recipe,
      model,
      parallel,
      strategy,
      train,
      dev,
      others,
      padId: tokenizer.padId,
      metrics,
      resume: resume && { state: resume.meta.loop, bestValues: resume.best },
      onLog: (e) => {
        run.appendJsonl('metrics.jsonl', e);
        tensorboard.write(e);
        if (e.kind === 'eval')
          report.log(
            `${recipe.evaluation.every_steps ? `step ${e.step} (epoch ${e.epoch})` : `epoch ${e.epoch}`}: ${[
              [recipe.dataset.eval_split, e.metrics!] as const,
              ...Object.entries(e.splits ?? {}),
            ]
              .map(([split, m]) => (others.length ? `${split} ` : '') + scores(m))
              .join('; ')}`,
          );
      },
      onStopped: (step) =>
        report.log(
          `early stopping: no improvement of ${recipe.dataset.eval_split} ${metrics[0]} in ${recipe.evaluation.early_stopping!.patience} evaluations; stopped at step ${step} of ${stage.work?.steps ?? step}`,
        ),
      onStep: (step, _total, loss, eps) => bar.tick(step, { loss: loss.toFixed(4), 'ex/s': eps.toFixed(1) }),
      onCheckpoint: (loop, best) => {
        const m = parallel.moments;
        writeCheckpoint(run.dir, model.specs, {
          meta: {
            version: 1,
            recipeHash: trial.recipeHash,
            backend,
            threads,
            ...(ctx.kernels && { kernels: ctx.kernels.kernel }),
            fisherHash: fisher?.hash,
            adamStep: m.step,
            loop,
          },
          values: model.values,
          m: m.m,
          v: m.v,
          best,
        });
      },
    });
    bar.end();
    strategy.masks?.finish?.();

    const kept = strategy.keptFractions(model.specs);
    const { maskStats } = strategy.report(recipe.strategy);
    writeMaskStats(run.path('mask-stats.json'), {
      ...maskStats,
      per_tensor: kept,
      per_layer: perLayer(model, kept),
      ...strategy.trainable(model.specs, recipe.strategy),
      ...(fisher ? { fisher: fisher.stats } : {}),
    });
    const was = resume && (resume.meta.kernels ?? 'exact');
    const kernelsResumedFrom = was && ctx.kernels && arithmeticOf(was) !== ctx.kernels.arithmetic ? was : undefined;
    return {
      loaded,
      result,
      strategy,
      fisher,
      resumedFromStep: resume?.meta.loop.step ?? null,
      kernelsResumedFrom,
      train,
      dev,
    };
  },
};

const scores = (m: Record<string, number>) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${v.toFixed(4)}`)
    .join(', ');

/**
 * Where a resumed run continues: the latest intact checkpoint, checked against this run's recipe, backend, thread
 * count and child network (any of which would change the numbers). metrics.jsonl is cut back to what the checkpoint saw.
 */
function resumePoint(
  run: RunDir,
  specs: readonly ParamSpec[],
  now: { recipeHash: string; backend: string; threads: number; fisherHash?: string; kernels?: KernelChoice },
  force: boolean,
  report: Reporter,
): TrainingCheckpoint | undefined {
  const { recipeHash, backend, threads, fisherHash, kernels } = now;
  const c = readCheckpoint(run.dir, specs, (line) => report.log(line));
  const lines = c?.meta.loop.metricsLines ?? 0;
  const metricsFile = run.path('metrics.jsonl');
  if (fs.existsSync(metricsFile))
    run.writeText(
      'metrics.jsonl',
      fs
        .readFileSync(metricsFile, 'utf8')
        .split('\n')
        .slice(0, lines)
        .map((l) => l + '\n')
        .join(''),
    );
  if (!c) {
    report.log('resume: no checkpoint yet; starting the training from the beginning in the same directory');
    return undefined;
  }
  const differs = [
    c.meta.recipeHash !== recipeHash && 'the recipe changed',
    c.meta.backend !== backend && `the checkpoint was written on backend ${c.meta.backend}, this run uses ${backend}`,
    c.meta.threads !== threads && `the checkpoint was written with ${c.meta.threads} threads, this run uses ${threads}`,
  ].filter(Boolean);
  // A different child network follows from changed data or weights: refused with them, unless --force.
  if (c.meta.fisherHash !== undefined && c.meta.fisherHash !== fisherHash) {
    const why = `the checkpoint trained the child network ${c.meta.fisherHash.slice(0, 12)}, this run's is ${fisherHash?.slice(0, 12)}`;
    if (force) report.log(`resume: --force: continuing although ${why}`);
    else differs.push(why);
  }
  if (differs.length)
    throw new RunError(
      `cannot resume ${run.dir}: ${differs.join('; ')}`,
      `Set runtime.backend and runtime.threads to what the run used (${c.meta.backend}, ${c.meta.threads}), or start a new run.`,
      'resume',
    );
  report.log(`resume: continuing from step ${c.meta.loop.step} (${c.dir})`);
  const was = c.meta.kernels ?? 'an exact kernel';
  if (kernels && arithmeticOf(was) !== kernels.arithmetic)
    report.log(
      `resume: the checkpoint trained with ${was} matrix kernels (${arithmeticOf(was)}), this machine runs ${kernels.kernel} (${kernels.arithmetic}): from step ${c.meta.loop.step} on the results agree with an uninterrupted run within float rounding, not bit for bit`,
    );
  return c;
}
