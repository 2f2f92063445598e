import { HubError, localModelDir } from '../engine/hub/cache.js';
import path from 'node:path';
import { readModelConfig, ModelError, type ModelConfig } from '../engine/config.js';
import { paramSpecs, positionRows, prefixOf } from '../engine/params.js';
import { DataFileError } from '../data/formats.js';
import { loadSplit, splitFile } from '../data/load.js';
import { taskSpecOf } from '../data/tasks.js';
import { resolveRecipe, type LoadedRecipe } from '../recipe/index.js';
import { diagnostic, pointerOf, type Diagnostic } from '../recipe/diagnostics.js';
import type { Dataset, Recipe } from '../recipe/types.generated.js';
import { checksFor, modifiersFor, stagesFor } from '../strategies/registry.js';
import { estimateDeviceMemory, estimateMemory, trainableOf } from './estimate.js';
import { fileFingerprint, modelFingerprint, needsFreshHead } from './fingerprint.js';
import { canonicalJson, hashInputs, sha256 } from './hash.js';
import { plannedKernels, plannedRuntime } from './runtime.js';
import {
  CACHED_STAGES,
  isCacheEntryComplete,
  type Plan,
  type PlannedTrial,
  type Stage,
  type StageKind,
} from './stages.js';
import { expandSweep } from './sweep.js';
import { otherSplits, trainingChecks, trainWork } from './training.js';

export { resolvedFisher, type ResolvedFisher } from '../strategies/child-tuning-d/fisher-settings.js';

/** Number of labels the classifier needs (1 for regression). */
export const numLabelsOf = (d: Dataset) => taskSpecOf(d).labels?.length ?? 1;

/** Fields that never change a result: excluded from every hash. */
export const volatile = (r: Recipe) => {
  const { runtime, training, name, sweep, ...rest } = r;
  const { log_every, checkpoint_every, ...trainingRest } = training;
  return { ...rest, training: trainingRest, runtime: { backend: runtime.backend } };
};

export const recipeHash = (r: Recipe) => sha256(canonicalJson(volatile(r)));

export interface CompileResult {
  plan?: Plan;
  /** Resolved recipe of each trial, by index. */
  recipes: Recipe[];
  diagnostics: Diagnostic[];
}

/** Compiles a loaded recipe (and its sweep) into a DAG of content-hashed stages. Reads inputs to fingerprint them; writes nothing. */
export function compilePlan(loaded: LoadedRecipe, recipeFile: string): CompileResult {
  const diagnostics: Diagnostic[] = [];
  if (!loaded.recipe || !loaded.composed) return { recipes: [], diagnostics: loaded.diagnostics };
  const stages = new Map<string, Stage>();
  const trials: PlannedTrial[] = [];
  const recipes: Recipe[] = [];
  const counts = new Map<string, number>();

  const add = (
    kind: StageKind,
    inputs: Record<string, unknown>,
    deps: Stage[],
    label: string,
    trial: number,
    cacheDir: string,
  ): Stage => {
    const hash = hashInputs(kind, inputs);
    const id = `${kind}:${hash.slice(0, 12)}`;
    let s = stages.get(id);
    if (!s) {
      const cached = CACHED_STAGES.has(kind) ? isCacheEntryComplete(cacheDir, kind, hash) : null;
      s = { id, kind, hash, deps: deps.map((d) => d.id), label, inputs, trials: [], cached };
      stages.set(id, s);
    }
    if (!s.trials.includes(trial)) s.trials.push(trial);
    return s;
  };

  const rowsIn = (dataset: Dataset, split: string) => {
    const spec = taskSpecOf(dataset);
    const file = splitFile(spec, dataset.dir, split);
    const key = `${fileFingerprint(file)}|${split}|${dataset.on_bad_row}|${canonicalJson(spec)}`;
    let n = counts.get(key);
    if (n === undefined) {
      n = loadSplit(spec, dataset.dir, split, dataset.on_bad_row).examples.length;
      counts.set(key, n);
    }
    return n;
  };

  for (const trial of expandSweep(loaded.recipe.sweep, loaded.recipe.strategy.kind)) {
    const r = trialRecipe(loaded, trial.overrides, trial.index, diagnostics);
    if (!r) continue;
    recipes[trial.index] = r;
    const cacheDir = r.runtime.cache_dir;
    const t = trial.index;
    let config: ModelConfig;
    let modelDir: string;
    try {
      modelDir = localModelDir(r.model.path);
      config = readModelConfig(modelDir, r.model.family);
    } catch (e) {
      if (!(e instanceof ModelError) && !(e instanceof HubError)) throw e;
      diagnostics.push(
        diagnostic('CT0309', e.message, '/model/path', {
          location: loaded.composed.sources.get('/model/path'),
          notes: e.hint ? [e.hint] : undefined,
        }),
      );
      continue;
    }
    const fp = modelFingerprint(modelDir);
    const model = add(
      'load-model',
      { weights: fp.weights, config: fp.config, family: config.family },
      [],
      path.basename(r.model.path),
      t,
      cacheDir,
    );

    const tokenized = (dataset: Dataset, split: string, subsample: boolean): { stage: Stage; examples: number } => {
      const spec = taskSpecOf(dataset);
      const file = splitFile(spec, dataset.dir, split);
      const loadStage = add(
        'load-dataset',
        { spec: { ...spec, files: undefined }, file: fileFingerprint(file), split, on_bad_row: dataset.on_bad_row },
        [],
        `${dataset.task} ${split}`,
        t,
        cacheDir,
      );
      loadStage.source ??= { dataset, split };
      let source = loadStage;
      let examples = rowsIn(dataset, split);
      if (subsample && dataset.subsample) {
        const strat = dataset.subsample.stratified && spec.labels !== null;
        source = add(
          'subsample',
          { data: loadStage.hash, size: dataset.subsample.size, seed: dataset.subsample.seed, stratified: strat },
          [loadStage],
          `${dataset.task} ${split}: ${dataset.subsample.size} of ${examples}`,
          t,
          cacheDir,
        );
        examples = dataset.subsample.size;
      }
      const stage = add(
        'tokenize',
        { data: source.hash, tokenizer: fp.tokenizer, family: config.family, max_seq_length: r.model.max_seq_length },
        [source, model],
        `${dataset.task} ${split} (${examples})`,
        t,
        cacheDir,
      );
      return { stage, examples };
    };

    let train: ReturnType<typeof tokenized>, dev: ReturnType<typeof tokenized>;
    let others: ReturnType<typeof tokenized>[];
    try {
      train = tokenized(r.dataset, r.dataset.train_split, true);
      dev = tokenized(r.dataset, r.dataset.eval_split, false);
      others = otherSplits(r).map((split) => tokenized(r.dataset, split, false));
    } catch (e) {
      if (!(e instanceof DataFileError)) throw e;
      diagnostics.push(
        diagnostic('CT0308', e.message, '/dataset', { location: loaded.composed.sources.get('/dataset') }),
      );
      continue;
    }
    const numLabels = numLabelsOf(r.dataset);
    diagnostics.push(...strategyChecks(r, loaded));
    diagnostics.push(...trainingChecks(r, train.examples, loaded));
    // A strategy that reads positions beyond the sequence's own (a prompt before it, a prefix it counts after).
    const positions = positionRows(config, numLabels, modifiersFor(r.strategy), r.model.max_seq_length);
    if (positions.needed > positions.rows && positions.needed > positions.plain)
      diagnostics.push(
        diagnostic(
          'CT0106',
          `strategy ${r.strategy.kind} with model.max_seq_length ${r.model.max_seq_length} reads ${positions.needed} position rows; the model has ${positions.rows}`,
          '/model/max_seq_length',
          {
            location: loaded.composed.sources.get('/model/max_seq_length'),
            notes: [
              `Lower model.max_seq_length to ${r.model.max_seq_length - (positions.needed - positions.rows)} or less, or the strategy's length.`,
            ],
          },
        ),
      );
    // The strategy's own stages before training (D: the fisher pass), each on the pretrained model and the training data.
    const extra = stagesFor(r, {
      modelHash: model.hash,
      train: { hash: train.stage.hash, examples: train.examples },
      numLabels,
      runtime: plannedRuntime(r),
      headSeed: () =>
        needsFreshHead(
          modelDir,
          paramSpecs(config, numLabels).filter((s) => s.group === 'head'),
          prefixOf(config),
        )
          ? r.training.seed
          : null,
    }).map((x) => {
      const s = add(x.kind, x.inputs, [model, train.stage], x.label, t, cacheDir);
      s.work = x.work;
      s.memory = estimateMemory(config, r, numLabels, x.kind);
      s.kernels = plannedKernels(r);
      if (r.runtime.backend === 'webgpu') s.device = estimateDeviceMemory(config, r, numLabels, x.kind);
      return s;
    });
    const fisher = extra.find((s) => s.kind === 'fisher');
    const v = volatile(r);
    const trainStage = add(
      'train',
      {
        model: model.hash,
        data: train.stage.hash,
        eval_data: dev.stage.hash,
        ...(others.length ? { other_eval_data: others.map((o) => o.stage.hash) } : {}),
        num_labels: numLabels,
        fisher: fisher?.hash,
        strategy: v.strategy,
        training: v.training,
        evaluation: v.evaluation,
        max_seq_length: r.model.max_seq_length,
        runtime: plannedRuntime(r),
      },
      [model, train.stage, dev.stage, ...others.map((o) => o.stage), ...extra],
      `${r.strategy.kind}${r.strategy.reserve_p !== undefined ? ` p=${r.strategy.reserve_p}` : ''} seed=${r.training.seed}`,
      t,
      cacheDir,
    );
    trainStage.work = trainWork(r, train.examples);
    trainStage.memory = estimateMemory(config, r, numLabels, 'train');
    trainStage.kernels = plannedKernels(r);
    if (r.runtime.backend === 'webgpu') trainStage.device = estimateDeviceMemory(config, r, numLabels, 'train');
    trainStage.trainable = trainableOf(paramSpecs(config, numLabels, modifiersFor(r.strategy)), r.strategy);
    const evaluate = add(
      'evaluate',
      {
        train: trainStage.hash,
        data: dev.stage.hash,
        metrics: r.evaluation.metrics ?? taskSpecOf(r.dataset).metrics,
        checkpoint: r.evaluation.checkpoint,
      },
      [trainStage, dev.stage],
      `${r.dataset.task} ${r.dataset.eval_split}`,
      t,
      cacheDir,
    );
    evaluate.work = { examples: dev.examples, epochs: 1, steps: Math.ceil(dev.examples / r.evaluation.batch_size) };

    const transfers: Stage[] = [];
    try {
      for (const d of r.transfer.domain) {
        const target = tokenized(d.dataset, d.dataset.eval_split, false);
        transfers.push(
          add(
            'transfer-eval',
            { mode: 'domain', train: trainStage.hash, data: target.stage.hash, label_map: d.label_map ?? null },
            [trainStage, target.stage],
            `domain ${d.name}`,
            t,
            cacheDir,
          ),
        );
      }
      for (const k of r.transfer.task) {
        const tTrain = tokenized(k.dataset, k.dataset.train_split, true);
        const tDev = tokenized(k.dataset, k.dataset.eval_split, false);
        const s = add(
          'transfer-eval',
          {
            mode: 'task',
            train: trainStage.hash,
            data: tTrain.stage.hash,
            eval_data: tDev.stage.hash,
            num_labels: numLabelsOf(k.dataset),
            training: k.training,
          },
          [trainStage, tTrain.stage, tDev.stage],
          `task ${k.name}`,
          t,
          cacheDir,
        );
        s.work = {
          examples: tTrain.examples,
          epochs: k.training.epochs,
          steps: Math.ceil(tTrain.examples / k.training.batch_size) * k.training.epochs,
        };
        transfers.push(s);
      }
    } catch (e) {
      if (!(e instanceof DataFileError)) throw e;
      diagnostics.push(
        diagnostic('CT0308', e.message, '/transfer', { location: loaded.composed.sources.get('/transfer') }),
      );
      continue;
    }
    trials.push({
      index: t,
      overrides: trial.overrides,
      ...(trial.strategySettings.length && { strategySettings: trial.strategySettings }),
      recipeHash: recipeHash(r),
      train: trainStage.id,
      evaluate: evaluate.id,
      fisher: fisher?.id,
      transfers: transfers.map((s) => s.id),
    });
  }
  if (diagnostics.length || trials.length === 0)
    return { recipes, diagnostics: [...loaded.diagnostics, ...diagnostics] };
  const finals = trials.flatMap((t) => [t.evaluate, ...t.transfers]).map((id) => stages.get(id)!);
  const report = add(
    'report',
    { results: finals.map((s) => s.hash) },
    finals,
    `${trials.length} trial${trials.length === 1 ? '' : 's'}`,
    -1,
    '',
  );
  report.trials = trials.map((t) => t.index);
  return {
    plan: { planVersion: 1, recipeFile, stages: [...stages.values()], trials, report: report.id },
    recipes,
    diagnostics: loaded.diagnostics,
  };
}

/** The resolved recipe of one sweep trial: the composed data with the trial's overrides, validated again. */
function trialRecipe(
  loaded: LoadedRecipe,
  overrides: Record<string, unknown>,
  index: number,
  diagnostics: Diagnostic[],
): Recipe | undefined {
  if (Object.keys(overrides).length === 0 && !loaded.recipe!.sweep) return loaded.recipe;
  const data = structuredClone(loaded.composed!.data);
  delete data.sweep;
  const sources = new Map(loaded.composed!.sources);
  for (const [key, value] of Object.entries(overrides)) {
    const segs = key.split('.');
    let target = data as Record<string, unknown>;
    for (const s of segs.slice(0, -1)) {
      if (!target[s] || typeof target[s] !== 'object') target[s] = {};
      target = target[s] as Record<string, unknown>;
    }
    target[segs[segs.length - 1]] = value;
    const from =
      loaded.composed!.sources.get(pointerOf(['sweep', 'grid', key])) ??
      perStrategySource(loaded, key) ??
      loaded.composed!.sources.get(pointerOf(['sweep', 'seeds'])) ??
      loaded.composed!.sources.get('/sweep');
    if (from) sources.set(pointerOf(segs), from);
  }
  const resolved = resolveRecipe({ ...loaded.composed!, data, sources });
  const label = Object.entries(overrides)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(', ');
  for (const d of resolved.diagnostics)
    diagnostics.push({ ...d, message: `sweep trial ${index} (${label}): ${d.message}` });
  return resolved.recipe;
}

/** Where the recipe sets a per_strategy path (the first kind that does), for a trial's diagnostics. */
const perStrategySource = (loaded: LoadedRecipe, key: string) =>
  Object.keys(loaded.recipe?.sweep?.per_strategy ?? {})
    .map((kind) => loaded.composed!.sources.get(pointerOf(['sweep', 'per_strategy', kind, key])))
    .find(Boolean);

/**
 * The strategy's own cross-field checks (its definition's check, and Child-Tuning inside it), placed at the recipe's
 * positions: what the plan reports, and what `validate` adds to the recipe layer's checks.
 */
export function strategyChecks(recipe: Recipe, loaded: LoadedRecipe): Diagnostic[] {
  return checksFor(recipe.strategy).map((d) => ({
    ...d,
    location: d.location ?? loaded.composed?.sources.get(d.pointer),
  }));
}
