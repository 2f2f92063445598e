import fs from 'node:fs';
import { stringify } from 'yaml';
import { labelNamesOf, taskSpecOf, type Metric } from '../data/tasks.js';
import { selectBackend } from '../engine/backend.js';
import { loadPretrained } from '../engine/checkpoint.js';
import { localModelDir } from '../engine/hub/cache.js';
import { nativeKernels } from '../engine/native.js';
import { ModelError, readModelConfig } from '../engine/config.js';
import type { EncoderClassifier } from '../engine/model.js';
import { sizeOf, type ParamSpec } from '../engine/params.js';
import { saveModel } from '../engine/save.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import { numLabelsOf, resolvedFisher } from '../plan/compiler.js';
import type { Plan, PlannedTrial } from '../plan/stages.js';
import type { Dataset, Recipe } from '../recipe/types.generated.js';
import { bitsetBytes } from '../strategies/bitset.js';
import { accumulateFisher, fisherHistogram, perLayer, selectChild, type FisherStats } from '../strategies/fisher.js';
import { childTuningD, strategyFor } from '../strategies/strategy.js';
import { StageCache } from './cache.js';
import { latestCheckpoint, readCheckpoint, writeCheckpoint, type TrainingCheckpoint } from './checkpoint.js';
import { prepareSplit, type PreparedSplit } from './data.js';
import { RunError } from './errors.js';
import { evaluate } from './evaluate.js';
import { DataParallel, threadsFor } from './parallel.js';
import { linearProbe } from './probe.js';
import { TensorBoardWriter } from './tensorboard.js';
import type { RunDir } from './rundir.js';
import { trainModel } from './train.js';

export interface Reporter {
  log(line: string): void;
  stage(name: string, total: number): { tick(done: number, info?: Record<string, string | number>): void; end(): void };
}

/** Executes one trial of a plan into a run directory; returns results.json's content. */
export async function executeTrial(plan: Plan, trial: PlannedTrial, recipe: Recipe, run: RunDir, report: Reporter, opts: { resume?: boolean; stopAfterFisher?: boolean } = {}) {
  const stageOf = (id: string) => plan.stages.find((s) => s.id === id)!;
  const durations: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } catch (e) {
      // error.json names the stage that failed, whatever kind of error it was.
      if (e instanceof Error && !(e as { stage?: string }).stage) Object.defineProperty(e, 'stage', { value: name });
      throw e;
    } finally {
      durations[name] = (performance.now() - t0) / 1000;
    }
  };
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
  const resume = opts.resume ? resumePoint(run, model.specs, trial.recipeHash, backend.name, threads, report) : undefined;
  resume?.values.forEach((v, i) => model.values[i].set(v));
  const t = recipe.training;
  const parallel = await DataParallel.start(model, { threads, backend: backend.name, adam: { lr: t.optimizer.lr, betas: t.optimizer.betas as [number, number], eps: t.optimizer.eps, weightDecay: t.optimizer.weight_decay } });
  try {
    if (resume) parallel.restoreMoments(resume.m, resume.v, resume.meta.adamStep);
    report.log(`threads: ${threads}`);

    let fisher: { masks: (Uint8Array | undefined)[]; stats: FisherStats; packed: Uint8Array } | undefined;
    if (trial.fisher) {
      const stage = stageOf(trial.fisher);
      const cache = new StageCache(recipe.runtime.cache_dir);
      if (cache.has('fisher', stage.hash)) {
        const stats: FisherStats = JSON.parse(cache.read('fisher', stage.hash, 'stats.json').toString('utf8'));
        const packed = cache.read('fisher', stage.hash, 'mask.bin');
        fisher = { stats, packed, masks: unpackMasks(packed, model.specs.map((s) => (stats.per_tensor[s.name] !== undefined ? sizeOf(s) : 0))) };
        report.log(`fisher: cached (${stage.hash.slice(0, 12)}), reusing its mask`);
        durations.fisher = 0;
      } else {
        const bar = report.stage('fisher', stage.work?.steps ?? 1);
        const computed = await timed('fisher', () => fisherStage(parallel, model, recipe, train, (done) => bar.tick(done)));
        bar.end();
        fisher = { ...computed, packed: packMasks(computed.masks) };
        cache.write('fisher', stage.hash, { 'mask.bin': fisher.packed, 'stats.json': JSON.stringify(fisher.stats, null, 2) });
        const st = fisher.stats;
        report.log(`fisher: ${st.passes} passes over ${st.examples} examples in ${durations.fisher.toFixed(1)} s; kept ${st.kept} of ${st.in_scope} (threshold ${st.threshold.toExponential(3)})`);
      }
    }

    if (opts.stopAfterFisher) return null;
    // The child network itself, one bit per in-scope parameter, for `childtune report`'s overlap matrix.
    if (fisher) run.writeBytes('child-mask.bin', fisher.packed);
    const strategy = strategyFor(recipe, model.specs, fisher?.masks);
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
        writeCheckpoint(run.dir, model.specs, { meta: { version: 1, recipeHash: trial.recipeHash, backend: backend.name, threads, adamStep: m.step, loop }, values: model.values, m: m.m, v: m.v, best });
      },
    }));
    bar.end();
    const final = recipe.evaluation.checkpoint === 'best' ? result.epochs[result.bestEpoch - 1].metrics : result.epochs.at(-1)!.metrics;

    const kept = strategy.keptFractions(model.specs);
    run.writeJson('mask-stats.json', { strategy: recipe.strategy.kind, reserve_p: recipe.strategy.reserve_p ?? 1, per_tensor: kept, per_layer: perLayer(model, kept), ...(fisher ? { fisher: fisher.stats } : {}) });

    const transfer = await timed('transfer', () => transferStage(parallel, model, recipe, tokenizer.padId, (d, split, sub) => prepareSplit(d, split, tokenizer, maxLen, sub), report));

    saveModel(model, run.path('model'), { source: modelDir, labels: labelNamesOf(recipe.dataset) });
    const results = {
      trial: trial.index, overrides: trial.overrides, task: recipe.dataset.task, strategy: recipe.strategy.kind, reserve_p: recipe.strategy.reserve_p ?? null,
      seed: recipe.training.seed, backend: backend.name, backend_skipped: backend.skipped, threads, metrics: final, epochs: result.epochs, best_epoch: result.bestEpoch, steps: result.steps,
      skipped_steps: result.skippedSteps, final_loss: result.finalLoss, transfer, durations_s: durations, resumed_from_step: resume?.meta.loop.step ?? null,
      hashes: { recipe: trial.recipeHash, train: stageOf(trial.train).hash, fisher: trial.fisher ? stageOf(trial.fisher).hash : null },
    };
    run.writeJson('results.json', results);
    return results;
  } finally {
    await parallel.close();
    model.dispose();
  }
}

/** The fisher stage: accumulate, select the child network, and describe it. */
async function fisherStage(parallel: DataParallel, model: EncoderClassifier, recipe: Recipe, train: PreparedSplit, onBatch: (done: number) => void): Promise<{ masks: (Uint8Array | undefined)[]; stats: FisherStats }> {
  const settings = resolvedFisher(recipe);
  const acc = await accumulateFisher(parallel, model.specs, train, settings, recipe.training.dropout, onBatch);
  const sel = selectChild(model, acc.fisher, recipe.strategy.reserve_p!, settings.scope);
  const fractions = childTuningD(sel.masks, false).keptFractions(model.specs);
  const perTensor = Object.fromEntries(Object.entries(fractions).filter(([name]) => sel.masks[model.indexOf(name)]));
  return {
    masks: sel.masks,
    stats: {
      estimator: settings.estimator, reserve_p: recipe.strategy.reserve_p!, examples: acc.examples, passes: acc.passes, in_scope: sel.inScope, kept: sel.kept,
      threshold: sel.threshold, ties: sel.ties, per_tensor: perTensor, per_layer: perLayer(model, fractions),
      histogram: fisherHistogram(acc.fisher.filter((f) => f.length)),
    },
  };
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
 * Where a resumed run continues: the latest checkpoint, checked against this run's recipe, backend and
 * thread count (any of which would change the numbers). metrics.jsonl is cut back to what the checkpoint saw.
 */
function resumePoint(run: RunDir, specs: readonly ParamSpec[], recipeHash: string, backend: string, threads: number, report: Reporter): TrainingCheckpoint | undefined {
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
  if (differs.length) throw new RunError(`cannot resume ${run.dir}: ${differs.join('; ')}`, `Set runtime.backend and runtime.threads to what the run used (${c.meta.backend}, ${c.meta.threads}), or start a new run.`);
  report.log(`resume: continuing from step ${c.meta.loop.step} (${latestCheckpoint(run.dir)})`);
  return c;
}

function packMasks(masks: (Uint8Array | undefined)[]): Uint8Array {
  const total = masks.reduce((a, m) => a + (m?.length ?? 0), 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const m of masks) if (m) { out.set(m, at); at += m.length; }
  return out;
}

function unpackMasks(buf: Uint8Array, sizes: number[]): (Uint8Array | undefined)[] {
  let at = 0;
  const out = sizes.map((n) => {
    if (!n) return undefined;
    const bytes = bitsetBytes(n);
    const m = Uint8Array.from(buf.subarray(at, at + bytes));
    at += bytes;
    return m;
  });
  if (at !== buf.length) throw new RunError('cached fisher mask does not match the model', 'Delete the cache directory entry and run again.', 'fisher');
  return out;
}
