import fs from 'node:fs';
import { splitFile } from '../../data/load.js';
import { taskSpecOf } from '../../data/tasks.js';
import type { Stage } from '../../plan/stages.js';
import { loadExamples, subsampleExamples, tokenizeExamples, type LoadedExamples, type PreparedSplit } from '../data.js';
import type { StageRunner, TrialContext } from '../walk.js';
import type { LoadedModel } from './load-model.js';

/**
 * Data read in this process, reused while the file is unchanged (its inode, size and times): the trials of a sweep
 * share one read of each split. The latest few only.
 */
const reads = new Map<string, LoadedExamples>();
const READS_KEPT = 8;
function readShared(stage: Stage): LoadedExamples {
  const { dataset, split } = stage.source!;
  const stat = fs.statSync(splitFile(taskSpecOf(dataset), dataset.dir, split), { throwIfNoEntry: false });
  const key = JSON.stringify([stage.hash, stat && [stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs]]);
  const hit = reads.get(key);
  if (hit) return hit;
  const loaded = loadExamples(dataset, split);
  reads.set(key, loaded);
  if (reads.size > READS_KEPT) reads.delete(reads.keys().next().value!);
  return loaded;
}

/** What a stage computed from a given input object, by stage hash: the same input and stage give the same output. */
const derived = new WeakMap<object, Map<string, unknown>>();
function deriveShared<T>(input: object, stage: Stage, compute: () => T): T {
  const byHash = derived.get(input) ?? new Map<string, unknown>();
  derived.set(input, byHash);
  if (!byHash.has(stage.hash)) byHash.set(stage.hash, compute());
  return byHash.get(stage.hash) as T;
}

export const loadDatasetRunner: StageRunner<LoadedExamples> = {
  run: (stage) => readShared(stage),
};

export const subsampleRunner: StageRunner<LoadedExamples> = {
  run: (stage, [data]) =>
    deriveShared(data as LoadedExamples, stage, () =>
      subsampleExamples(data as LoadedExamples, stage.inputs as { size: number; seed: number; stratified: boolean }),
    ),
};

export const tokenizeRunner: StageRunner<PreparedSplit> = {
  run(stage, [data, loaded], ctx) {
    const split = deriveShared(data as LoadedExamples, stage, () =>
      tokenizeExamples(
        data as LoadedExamples,
        (loaded as LoadedModel).tokenizer,
        stage.inputs.max_seq_length as number,
      ),
    );
    describeTrialData(stage, split, ctx);
    return split;
  },
};

/** The tokenize stages of the trial's training and evaluation data (one stage when both are the same). */
function trialData(ctx: TrialContext): { train: Stage; dev: Stage } {
  const train = ctx.stageOf(ctx.trial.train);
  const tokenized = train.deps.map((d) => ctx.stageOf(d)).filter((s) => s.kind === 'tokenize');
  return {
    train: tokenized.find((s) => s.hash === train.inputs.data)!,
    dev: tokenized.find((s) => s.hash === train.inputs.eval_data)!,
  };
}

/** Once both the training and the evaluation data are tokenized: the log's data lines and subsample.json. */
function describeTrialData(stage: Stage, split: PreparedSplit, ctx: TrialContext) {
  const ids = trialData(ctx);
  const of = (s: Stage) => (s.id === stage.id ? split : (ctx.outputs.get(s.id) as PreparedSplit | undefined));
  const [train, dev] = [of(ids.train), of(ids.dev)];
  if ((stage.id !== ids.train.id && stage.id !== ids.dev.id) || !train || !dev) return;
  const { recipe, report, run } = ctx;
  report.log(
    `data: ${train.encodings.length} training examples${train.indices ? ` (subsample of ${recipe.dataset.subsample!.size}, seed ${recipe.dataset.subsample!.seed})` : ''}, ${dev.encodings.length} evaluation examples`,
  );
  for (const s of [train, dev])
    if (s.skipped) report.log(`data: skipped ${s.skipped} malformed rows in ${s.file} (on_bad_row: skip)`);
  if (train.indices)
    run.writeJson('subsample.json', {
      file: train.file,
      size: train.indices.length,
      seed: recipe.dataset.subsample!.seed,
      indices: train.indices,
    });
}
