import { stringify } from 'yaml';
import { taskSpecOf, type Metric } from '../data/tasks.js';
import { selectBackend } from '../engine/backend.js';
import { loadPretrained, saveModel } from '../engine/checkpoint.js';
import { ModelError, readModelConfig } from '../engine/config.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import { numLabelsOf, resolvedFisher } from '../plan/compiler.js';
import type { Plan, PlannedTrial } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import { bitsetBytes } from '../strategies/bitset.js';
import { accumulateFisher, fisherHistogram, perLayer, selectChild, type FisherStats } from '../strategies/fisher.js';
import { strategyFor } from '../strategies/strategy.js';
import { StageCache } from './cache.js';
import { prepareSplit } from './data.js';
import { RunError } from './errors.js';
import { evaluate } from './evaluate.js';
import { linearProbe } from './probe.js';
import type { RunDir } from './rundir.js';
import { trainModel } from './train.js';

export interface Reporter {
  log(line: string): void;
  stage(name: string, total: number): { tick(done: number, info?: Record<string, string | number>): void; end(): void };
}

/** Executes one trial of a plan into a run directory; returns results.json's content. */
export async function executeTrial(plan: Plan, trial: PlannedTrial, recipe: Recipe, run: RunDir, report: Reporter) {
  const stageOf = (id: string) => plan.stages.find((s) => s.id === id)!;
  const durations: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      durations[name] = (performance.now() - t0) / 1000;
    }
  };
  run.writeText('recipe.resolved.yaml', stringify(recipe));
  run.writeJson('plan.json', plan);

  const backend = await selectBackend(recipe.runtime.backend);
  report.log(`backend: ${backend.name}${backend.skipped.length ? ` (skipped: ${backend.skipped.map((s) => `${s.name}: ${s.why}`).join('; ')})` : ''}`);
  const config = readModelConfig(recipe.model.path, recipe.model.family);
  const tokenizer = loadTokenizer(recipe.model.path, { lowerCase: config.doLowerCase });
  if (tokenizer.vocabSize > config.vocabSize) throw new ModelError(recipe.model.path, `the tokenizer has ${tokenizer.vocabSize} tokens but config.json's vocab_size is ${config.vocabSize}`, 'The vocabulary does not belong to this checkpoint.');
  const maxLen = recipe.model.max_seq_length;

  const { train, dev } = await timed('tokenize', () => ({
    train: prepareSplit(recipe.dataset, recipe.dataset.train_split, tokenizer, maxLen, true),
    dev: prepareSplit(recipe.dataset, recipe.dataset.eval_split, tokenizer, maxLen, false),
  }));
  report.log(`data: ${train.encodings.length} training examples${train.indices ? ` (subsample of ${recipe.dataset.subsample!.size}, seed ${recipe.dataset.subsample!.seed})` : ''}, ${dev.encodings.length} evaluation examples`);
  for (const s of [train, dev]) if (s.skipped) report.log(`data: skipped ${s.skipped} malformed rows in ${s.file} (on_bad_row: skip)`);
  if (train.indices) run.writeJson('subsample.json', { file: train.file, size: train.indices.length, seed: recipe.dataset.subsample!.seed, indices: train.indices });

  const numLabels = numLabelsOf(recipe.dataset);
  const { model, notes } = await timed('load-model', () => loadPretrained(recipe.model.path, { family: recipe.model.family, numLabels, seed: recipe.training.seed }));
  for (const n of notes) report.log(`model: ${n}`);

  let masks: (Uint8Array | undefined)[] | undefined;
  let fisherStats: FisherStats | undefined;
  if (trial.fisher) {
    const stage = stageOf(trial.fisher);
    const cache = new StageCache(recipe.runtime.cache_dir);
    const settings = resolvedFisher(recipe);
    if (cache.has('fisher', stage.hash)) {
      fisherStats = JSON.parse(cache.read('fisher', stage.hash, 'stats.json').toString('utf8'));
      masks = unpackMasks(cache.read('fisher', stage.hash, 'mask.bin'), model.specs.map((s) => fisherStats!.per_tensor[s.name] !== undefined ? s.shape.reduce((a, b) => a * b, 1) : 0));
      report.log(`fisher: cached (${stage.hash.slice(0, 12)}), reusing its mask`);
      durations.fisher = 0;
    } else {
      await timed('fisher', () => {
        const bar = report.stage('fisher', stage.work?.steps ?? 1);
        const acc = accumulateFisher(model, train, settings, recipe.training.dropout, (done) => bar.tick(done));
        bar.end();
        const sel = selectChild(model, acc.fisher, recipe.strategy.reserve_p!, settings.scope);
        masks = sel.masks;
        const fractions = strategyFor(recipe, masks).keptFractions(model.specs);
        const perTensor = Object.fromEntries(Object.entries(fractions).filter(([name]) => masks![model.indexOf(name)]));
        fisherStats = {
          estimator: settings.estimator, reserve_p: recipe.strategy.reserve_p!, examples: acc.examples, passes: acc.passes, in_scope: sel.inScope, kept: sel.kept,
          threshold: sel.threshold, ties: sel.ties, per_tensor: perTensor, per_layer: perLayer(model, fractions),
          histogram: fisherHistogram(acc.fisher.filter((f) => f.length)),
        };
        cache.write('fisher', stage.hash, { 'mask.bin': packMasks(masks), 'stats.json': JSON.stringify(fisherStats, null, 2) });
      });
      report.log(`fisher: ${fisherStats!.passes} passes over ${fisherStats!.examples} examples in ${durations.fisher.toFixed(1)} s; kept ${fisherStats!.kept} of ${fisherStats!.in_scope} (threshold ${fisherStats!.threshold.toExponential(3)})`);
    }
  }

  const strategy = strategyFor(recipe, masks);
  const metrics = (recipe.evaluation.metrics ?? taskSpecOf(recipe.dataset).metrics) as Metric[];
  const trainStage = stageOf(trial.train);
  const bar = report.stage('train', trainStage.work?.steps ?? 1);
  const result = await timed('train', () => trainModel({
    recipe, model, strategy, train, dev, padId: tokenizer.padId, metrics,
    onLog: (e) => {
      run.appendJsonl('metrics.jsonl', e);
      if (e.kind === 'eval') report.log(`epoch ${e.epoch}: ${Object.entries(e.metrics!).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
    },
    onStep: (step, _total, loss, eps) => bar.tick(step, { loss: loss.toFixed(4), 'ex/s': eps.toFixed(1) }),
  }));
  bar.end();
  const final = recipe.evaluation.checkpoint === 'best' ? result.epochs[result.bestEpoch - 1].metrics : result.epochs.at(-1)!.metrics;

  const kept = strategy.keptFractions(model.specs);
  run.writeJson('mask-stats.json', { strategy: recipe.strategy.kind, reserve_p: recipe.strategy.reserve_p ?? 1, per_tensor: kept, per_layer: perLayer(model, kept), ...(fisherStats ? { fisher: fisherStats } : {}) });

  const transfer: Record<string, Record<string, number>> = {};
  await timed('transfer', () => {
    for (const d of recipe.transfer.domain) {
      const target = prepareSplit(d.dataset, d.dataset.eval_split, tokenizer, maxLen, false);
      const src = taskSpecOf(recipe.dataset).labels!;
      const dst = target.spec.labels!;
      const map = d.label_map ? (p: number) => dst.indexOf(d.label_map![src[p]]) : undefined;
      transfer[`domain/${d.name}`] = evaluate(model, target, ['accuracy'], recipe.evaluation.batch_size, tokenizer.padId, map);
      report.log(`transfer ${d.name}: accuracy ${transfer[`domain/${d.name}`].accuracy.toFixed(4)}`);
    }
    for (const k of recipe.transfer.task) {
      const tTrain = prepareSplit(k.dataset, k.dataset.train_split, tokenizer, maxLen, true);
      const tDev = prepareSplit(k.dataset, k.dataset.eval_split, tokenizer, maxLen, false);
      transfer[`task/${k.name}`] = linearProbe(model, tTrain, tDev, k.training, tokenizer.padId, (k.dataset.task === 'custom' ? undefined : taskSpecOf(k.dataset).metrics) ?? ['accuracy']);
      report.log(`transfer ${k.name}: ${Object.entries(transfer[`task/${k.name}`]).map(([m, v]) => `${m} ${v.toFixed(4)}`).join(', ')}`);
    }
  });

  saveModel(model, run.path('model'), { tokenizerFrom: recipe.model.path, labels: taskSpecOf(recipe.dataset).labels ?? ['score'] });
  model.dispose();
  const results = {
    trial: trial.index, overrides: trial.overrides, task: recipe.dataset.task, strategy: recipe.strategy.kind, reserve_p: recipe.strategy.reserve_p ?? null,
    seed: recipe.training.seed, backend: backend.name, backend_skipped: backend.skipped, metrics: final, epochs: result.epochs, best_epoch: result.bestEpoch, steps: result.steps,
    skipped_steps: result.skippedSteps, final_loss: result.finalLoss, transfer, durations_s: durations,
    hashes: { recipe: trial.recipeHash, train: stageOf(trial.train).hash, fisher: trial.fisher ? stageOf(trial.fisher).hash : null },
  };
  run.writeJson('results.json', results);
  return results;
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
