import fs from 'node:fs';
import { stringify } from 'yaml';
import { labelNamesOf, taskSpecOf, type Metric } from '../data/tasks.js';
import { selectBackend } from '../engine/backend.js';
import { loadPretrained } from '../engine/checkpoint.js';
import { localModelDir } from '../engine/hub/cache.js';
import { nativeKernels } from '../engine/native.js';
import { ModelError, readModelConfig } from '../engine/config.js';
import type { EncoderClassifier } from '../engine/model.js';
import type { ParamSpec } from '../engine/params.js';
import { saveModel } from '../engine/save.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import { overBudget } from '../plan/budget.js';
import { numLabelsOf } from '../plan/compiler.js';
import type { Plan, PlannedTrial } from '../plan/stages.js';
import type { Dataset, Recipe } from '../recipe/types.generated.js';
import { perLayer } from '../strategies/fisher.js';
import { strategyFor } from '../strategies/registry.js';
import { latestCheckpoint, readCheckpoint, writeCheckpoint, type TrainingCheckpoint } from './checkpoint.js';
import { writeChildMask } from './child-mask.js';
import { prepareSplit, type PreparedSplit } from './data.js';
import { RunError } from './errors.js';
import { evaluate } from './evaluate.js';
import { fMaskLogFor } from './fmasks.js';
import { childNetwork } from './fisher-stage.js';
import { checkInputs, trialInputs } from './inputs.js';
import { DataParallel, threadsFor } from './parallel.js';
import { linearProbe } from './probe.js';
import type { RunDir } from './rundir.js';
import { TensorBoardWriter } from './tensorboard.js';
import { trainModel } from './train.js';

export interface Reporter {
  log(line: string): void;
  stage(name: string, total: number): { tick(done: number, info?: Record<string, string | number>): void; end(): void };
}

/** Executes one trial of a plan into a run directory; returns results.json's content. */
export async function executeTrial(plan: Plan, trial: PlannedTrial, recipe: Recipe, run: RunDir, report: Reporter, opts: { resume?: boolean; force?: boolean; stopAfterFisher?: boolean } = {}) {
  const stageOf = (id: string) => plan.stages.find((s) => s.id === id)!;
  const durations: Record<string, number> = {};
  // error.json names the stage that failed, whatever kind of error it was; 'setup' before the first stage.
  let current = 'setup';
  const timed = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    current = name;
    try {
      return await fn();
    } finally {
      durations[name] = (performance.now() - t0) / 1000;
    }
  };
  try {
    return await execute();
  } catch (e) {
    if (e instanceof Error && !(e as { stage?: string }).stage) Object.defineProperty(e, 'stage', { value: current });
    throw e;
  }

  async function execute() {
    checkInputs(run, trialInputs(plan, trial), !!opts.resume, !!opts.force, report.log);
    // Refused before anything is allocated: the plan's estimates against this machine's memory.
    for (const id of [trial.fisher, trial.train]) {
      const over = id && overBudget(stageOf(id));
      if (over) throw new RunError(`${recipe.model.path}: ${over}`, 'Use a smaller model, a smaller batch_size or max_seq_length, or fewer runtime.threads.', 'setup');
    }
    run.writeText('recipe.resolved.yaml', stringify(recipe));
    run.writeJson('plan.json', plan);

    const backend = await selectBackend(recipe.runtime.backend);
    report.log(`backend: ${backend.name}${backend.skipped.length ? ` (skipped: ${backend.skipped.map((s) => `${s.name}: ${s.why}`).join('; ')})` : ''}`);
    if (backend.name === 'wasm') report.log(`matrix products: ${nativeKernels().why}`);
    const modelDir = localModelDir(recipe.model.path);
    const config = readModelConfig(modelDir, recipe.model.family);
    const tokenizer = loadTokenizer(modelDir, { lowerCase: config.doLowerCase });
    if (tokenizer.vocabSize > config.vocabSize) throw new ModelError(modelDir, `the tokenizer has ${tokenizer.vocabSize} tokens but config.json's vocab_size is ${config.vocabSize}`, 'The vocabulary does not belong to this checkpoint.');
    const maxLen = recipe.model.max_seq_length;

    const { train, dev } = await timed('tokenize', () => ({
      train: prepareSplit(recipe.dataset, recipe.dataset.train_split, tokenizer, maxLen, true),
      dev: prepareSplit(recipe.dataset, recipe.dataset.eval_split, tokenizer, maxLen, false),
    }));
    report.log(`data: ${train.encodings.length} training examples${train.indices ? ` (subsample of ${recipe.dataset.subsample!.size}, seed ${recipe.dataset.subsample!.seed})` : ''}, ${dev.encodings.length} evaluation examples`);
    for (const s of [train, dev]) if (s.skipped) report.log(`data: skipped ${s.skipped} malformed rows in ${s.file} (on_bad_row: skip)`);
    if (train.indices) run.writeJson('subsample.json', { file: train.file, size: train.indices.length, seed: recipe.dataset.subsample!.seed, indices: train.indices });

    const numLabels = numLabelsOf(recipe.dataset);
    const { model, notes } = await timed('load-model', () => loadPretrained(modelDir, { family: recipe.model.family, numLabels, seed: recipe.training.seed }));
    for (const n of notes) report.log(`model: ${n}`);
    const threads = threadsFor(recipe.runtime.threads, backend.name);
    const t = recipe.training;
    const parallel = await DataParallel.start(model, { threads, backend: backend.name, adam: { lr: t.optimizer.lr, betas: t.optimizer.betas as [number, number], eps: t.optimizer.eps, weightDecay: t.optimizer.weight_decay } });
    try {
      report.log(`threads: ${threads}`);
      // The fisher stage runs on the model as loaded (pretrained weights, seeded head), before any checkpoint.
      current = 'fisher';
      const fisher = trial.fisher ? await childNetwork(stageOf(trial.fisher), { backend: backend.name, threads }, parallel, model, recipe, train, report, timed) : undefined;
      if (fisher?.cached) durations.fisher = 0;
      if (opts.stopAfterFisher) return null;

      current = 'resume';
      const resume = opts.resume ? resumePoint(run, model.specs, { recipeHash: trial.recipeHash, backend: backend.name, threads, fisherHash: fisher?.hash }, !!opts.force, report) : undefined;
      if (resume) {
        resume.values.forEach((v, i) => model.values[i].set(v));
        await parallel.reload();
        parallel.restoreMoments(resume.m, resume.v, resume.meta.adamStep);
      }
      // The child network itself, in checkpoint order, for `childtune report`'s overlap matrix and other tools.
      if (fisher) writeChildMask(run, model.specs, fisher.masks);
      const strategy = strategyFor(recipe, model.specs, fisher?.masks);
      strategy.masks = fMaskLogFor(recipe, strategy, model.specs, run, resume?.meta.adamStep ?? 0);
      const metrics = (recipe.evaluation.metrics ?? taskSpecOf(recipe.dataset).metrics) as Metric[];
      const tensorboard = TensorBoardWriter.create(run.path('tb'), run.path('metrics.jsonl'));
      const bar = report.stage('train', stageOf(trial.train).work?.steps ?? 1);
      if (resume) bar.tick(resume.meta.loop.step);
      const result = await timed('train', () => trainModel({
        recipe, model, parallel, strategy, train, dev, padId: tokenizer.padId, metrics,
        resume: resume && { state: resume.meta.loop, bestValues: resume.best },
        onLog: (e) => {
          run.appendJsonl('metrics.jsonl', e);
          tensorboard.write(e);
          if (e.kind === 'eval') report.log(`epoch ${e.epoch}: ${Object.entries(e.metrics!).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
        },
        onStep: (step, _total, loss, eps) => bar.tick(step, { loss: loss.toFixed(4), 'ex/s': eps.toFixed(1) }),
        onCheckpoint: (loop, best) => {
          const m = parallel.moments;
          writeCheckpoint(run.dir, model.specs, { meta: { version: 1, recipeHash: trial.recipeHash, backend: backend.name, threads, fisherHash: fisher?.hash, adamStep: m.step, loop }, values: model.values, m: m.m, v: m.v, best });
        },
      }));
      bar.end();
      const final = recipe.evaluation.checkpoint === 'best' ? result.epochs[result.bestEpoch - 1].metrics : result.epochs.at(-1)!.metrics;

      const kept = strategy.keptFractions(model.specs);
      const strategyFields = strategy.definition.report(recipe.strategy);
      const trainable = strategy.trainable(model.specs);
      run.writeJson('mask-stats.json', { ...strategyFields.maskStats, per_tensor: kept, per_layer: perLayer(model, kept), ...trainable, ...(fisher ? { fisher: fisher.stats } : {}) });

      const transfer = await timed('transfer', () => transferStage(parallel, model, recipe, tokenizer.padId, (d, split, sub) => prepareSplit(d, split, tokenizer, maxLen, sub), report));

      current = 'save';
      saveModel(model, run.path('model'), { source: modelDir, labels: labelNamesOf(recipe.dataset) });
      const results = {
        trial: trial.index, overrides: trial.overrides, task: recipe.dataset.task, ...strategyFields.results, ...trainable,
        seed: recipe.training.seed, backend: backend.name, backend_skipped: backend.skipped, threads, metrics: final, epochs: result.epochs, best_epoch: result.bestEpoch, steps: result.steps,
        skipped_steps: result.skippedSteps, final_loss: result.finalLoss, transfer, durations_s: durations, resumed_from_step: resume?.meta.loop.step ?? null,
        hashes: { recipe: trial.recipeHash, train: stageOf(trial.train).hash, fisher: fisher?.hash ?? null },
      };
      run.writeJson('results.json', results);
      run.remove('error.json');
      return results;
    } finally {
      await parallel.close();
      model.dispose();
    }
  }
}

/** Domain transfer (evaluate on other datasets through a label map) and task transfer (frozen-encoder linear probes). */
async function transferStage(parallel: DataParallel, model: EncoderClassifier, recipe: Recipe, padId: number, prepare: (d: Dataset, split: string, subsample: boolean) => PreparedSplit, report: Reporter) {
  const transfer: Record<string, Record<string, number>> = {};
  for (const d of recipe.transfer.domain) {
    const target = prepare(d.dataset, d.dataset.eval_split, false);
    const src = taskSpecOf(recipe.dataset).labels!;
    const dst = target.spec.labels!;
    const map = d.label_map ? (p: number) => dst.indexOf(d.label_map![src[p]]) : undefined;
    transfer[`domain/${d.name}`] = await evaluate(parallel, model.numLabels, target, ['accuracy'], recipe.evaluation.batch_size, padId, map);
    report.log(`transfer ${d.name}: accuracy ${transfer[`domain/${d.name}`].accuracy.toFixed(4)}`);
  }
  for (const k of recipe.transfer.task) {
    const tTrain = prepare(k.dataset, k.dataset.train_split, true);
    const tDev = prepare(k.dataset, k.dataset.eval_split, false);
    transfer[`task/${k.name}`] = await linearProbe(parallel, model.config.hiddenSize, tTrain, tDev, k.training, padId, (k.dataset.task === 'custom' ? undefined : taskSpecOf(k.dataset).metrics) ?? ['accuracy']);
    report.log(`transfer ${k.name}: ${Object.entries(transfer[`task/${k.name}`]).map(([m, v]) => `${m} ${v.toFixed(4)}`).join(', ')}`);
  }
  return transfer;
}

/**
 * Where a resumed run continues: the latest checkpoint, checked against this run's recipe, backend, thread
 * count and child network (any of which would change the numbers). metrics.jsonl is cut back to what the checkpoint saw.
 */
function resumePoint(run: RunDir, specs: readonly ParamSpec[], now: { recipeHash: string; backend: string; threads: number; fisherHash?: string }, force: boolean, report: Reporter): TrainingCheckpoint | undefined {
  const { recipeHash, backend, threads, fisherHash } = now;
  const c = readCheckpoint(run.dir, specs);
  const lines = c?.meta.loop.metricsLines ?? 0;
  const metricsFile = run.path('metrics.jsonl');
  if (fs.existsSync(metricsFile)) run.writeText('metrics.jsonl', fs.readFileSync(metricsFile, 'utf8').split('\n').slice(0, lines).map((l) => l + '\n').join(''));
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
  if (differs.length) throw new RunError(`cannot resume ${run.dir}: ${differs.join('; ')}`, `Set runtime.backend and runtime.threads to what the run used (${c.meta.backend}, ${c.meta.threads}), or start a new run.`);
  report.log(`resume: continuing from step ${c.meta.loop.step} (${latestCheckpoint(run.dir)})`);
  return c;
}
