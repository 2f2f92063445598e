import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { EncoderClassifier } from '../engine/model.js';
import type { MicroBatch } from '../engine/training-pool.js';
import { sizeOf } from '../engine/params.js';
import { clipCoefficient, learningRate } from '../engine/optimizer.js';
import { Rng, streamSeed } from '../engine/rng.js';
import { totalSteps } from '../plan/steps.js';
import type { Recipe } from '../recipe/types.generated.js';
import { STREAMS, type Strategy } from '../strategies/strategy.js';
import type { PreparedSplit } from './data.js';
import { RunError } from './errors.js';
import { evaluate } from './evaluate.js';
import { checkInterrupt, interruptRequested, yieldToSignals } from './interrupt.js';
import type { RunPool } from './parallel.js';

export interface LogEntry {
  kind: 'step' | 'eval';
  step: number;
  epoch: number;
  loss?: number;
  lr?: number;
  grad_norm?: number;
  /** Fraction of all gradient elements the strategy let through to AdamW over the logging window. */
  kept_fraction?: number;
  examples_per_s?: number;
  metrics?: Record<string, number>;
  /** An evaluation's scores on the other splits of evaluation.splits, by split name. */
  splits?: Record<string, Record<string, number>>;
}

/** One evaluation: where the training was, its scores on the evaluation split, and on the other splits evaluated. */
export interface Evaluation {
  epoch: number;
  /** Absent in checkpoints written before evaluations recorded their step. */
  step?: number;
  metrics: Record<string, number>;
  splits?: Record<string, Record<string, number>>;
}

/**
 * Everything the loop needs to continue exactly where it stopped, besides the weights and Adam moments.
 * Random streams are derived from (seed, purpose, step or epoch), so no generator state is needed.
 */
export interface LoopState {
  /** Steps taken, skipped ones included. */
  step: number;
  /**
   * Epoch and batch position of the next step. A checkpoint is only taken between optimizer steps, so with
   * gradient accumulation no partly accumulated gradient is ever lost: the position is a whole group's start.
   */
  epoch: number;
  batch: number;
  skipped: number;
  lastLoss: number;
  /** The loss-logging window in progress; `dropped`: F's masked-out gradient elements before it began. */
  window: { lossSum: number; lossCount: number; examples: number; dropped?: number };
  /** Every evaluation so far (one per epoch, or every evaluation.every_steps steps). */
  epochs: Evaluation[];
  /** The best evaluation so far by the main metric: its epoch, its step (absent in older checkpoints) and score. */
  best: { epoch: number; step?: number; score: number };
  /** Early stopping: evaluations in a row without an improvement of more than min_delta (absent: 0). */
  sinceImproved?: number;
  /** The step at which early stopping ended the training. */
  stoppedAt?: number;
  /** Lines of metrics.jsonl written when this state was taken. */
  metricsLines: number;
  /** Child-Tuning-F's kept counts per tensor so far (for mask-stats.json). */
  kept: [number, number, number][];
}

export interface TrainResult {
  steps: number;
  skippedSteps: number;
  epochs: Evaluation[];
  bestEpoch: number;
  /** Index in `epochs` of the evaluation whose model is kept: the best (evaluation.checkpoint: best) or the last. */
  selected: number;
  /** How it was selected: 'last' also where checkpoint: best found no score to compare (every one undefined). */
  selectedBy: 'best' | 'last';
  /** The step at which early stopping ended the training, when it did. */
  stoppedAt?: number;
  finalLoss: number;
}

/**
 * The strategy's change to the training state after the optimizer step just taken (diff pruning's projection):
 * offered the host copies of the weights and moments, handed back to the threads or the GPU when it changed them.
 */
async function changeState(strategy: Strategy, model: EncoderClassifier, parallel: RunPool) {
  const { step } = parallel.moments;
  if (!strategy.changesAt(step)) return;
  await parallel.syncToHost();
  const { m, v } = parallel.moments;
  if (!strategy.changeAt({ specs: model.specs, values: model.values, m, v })) return;
  model.markDirty();
  await parallel.reload();
  parallel.restoreMoments(m, v, step);
}

/** A checkpoint to continue from: loop state, plus the best evaluation's weights when evaluation.checkpoint is 'best'. */
export interface Resume {
  state: LoopState;
  bestValues?: Float32Array[];
}

/**
 * The fine-tuning loop: seeded shuffling per epoch, dynamic padding, forward/backward on every thread (over
 * `training.accumulate` batches per optimizer step), global-norm clipping of the step's gradient, the strategy's
 * mask inside AdamW, linear warmup/decay, evaluation after each epoch or every `evaluation.every_steps` steps with
 * the best evaluation's weights kept and early stopping, and a checkpoint every `training.checkpoint_every` steps
 * (and when a signal asks the run to stop). Same recipe, seed, backend and thread count give bit-identical losses,
 * whether or not the run was interrupted and resumed.
 */
export async function trainModel(o: {
  recipe: Recipe;
  model: EncoderClassifier;
  parallel: RunPool;
  strategy: Strategy;
  train: PreparedSplit;
  dev: PreparedSplit;
  /** The other splits of evaluation.splits, evaluated beside `dev` at every evaluation. */
  others?: { name: string; split: PreparedSplit }[];
  padId: number;
  metrics: Metric[];
  resume?: Resume;
  onLog?: (e: LogEntry) => void;
  onStep?: (step: number, total: number, loss: number, examplesPerSecond: number) => void;
  onCheckpoint?: (state: LoopState, bestValues: Float32Array[] | undefined) => void;
  /** Early stopping ended the training at this step. */
  onStopped?: (step: number) => void;
}): Promise<TrainResult> {
  const { recipe: r, model, parallel } = o;
  const t = r.training;
  const n = o.train.encodings.length;
  const perEpoch = Math.ceil(n / t.batch_size);
  const accumulate = t.accumulate ?? 1;
  const total = totalSteps(n, t);
  const { every_steps: every, early_stopping: stopping } = r.evaluation;
  // Rounded up, as Hugging Face's Trainer does (get_warmup_steps: ceil(warmup_ratio x steps)).
  const warmup = Math.ceil(t.schedule.warmup_ratio * total);
  const s: LoopState = o.resume?.state ?? {
    step: 0,
    epoch: 0,
    batch: 0,
    skipped: 0,
    lastLoss: NaN,
    window: { lossSum: 0, lossCount: 0, examples: 0 },
    epochs: [],
    best: { epoch: -1, score: -Infinity },
    metricsLines: 0,
    kept: [],
  };
  let bestValues = o.resume?.bestValues;
  for (const [index, kept, count] of s.kept) o.strategy.record(index, kept, count);
  const keptFraction = keptFractionOf(o.strategy, model);
  const log = (e: LogEntry) => {
    s.metricsLines++;
    o.onLog?.(e);
  };
  const checkpoint = async () => {
    s.kept = o.strategy.keptCounts();
    // On a GPU the weights and moments are copied to the host first; on the CPU they are there already.
    await parallel.syncToHost();
    o.onCheckpoint?.(s, bestValues);
  };
  /**
   * Evaluates the evaluation split (and the others beside it), logs it, keeps the best one's weights and counts
   * evaluations without improvement; early stopping sets `stoppedAt`.
   */
  const evaluation = async () => {
    const { batch_size } = r.evaluation;
    const metrics = await evaluate(parallel, model.numLabels, o.dev, o.metrics, batch_size, o.padId);
    const splits = o.others?.length ? ({} as Record<string, Record<string, number>>) : undefined;
    for (const { name, split } of o.others ?? [])
      splits![name] = await evaluate(parallel, model.numLabels, split, o.metrics, batch_size, o.padId);
    const at = { epoch: s.epoch + 1, step: s.step };
    s.epochs.push({ ...at, metrics, ...(splits && { splits }) });
    log({ kind: 'eval', ...at, metrics, ...(splits && { splits }) });
    // Every metric childtune computes is better higher, as Hugging Face's greater_is_better defaults for them.
    const score = metrics[o.metrics[0]];
    const improved = stopping && score > s.best.score + stopping.min_delta;
    if (score > s.best.score) {
      s.best = { ...at, score };
      if (r.evaluation.checkpoint === 'best') {
        await parallel.syncToHost();
        bestValues = model.values.map((v) => Float32Array.from(v));
      }
    }
    if (!stopping) return;
    s.sinceImproved = improved ? 0 : (s.sinceImproved ?? 0) + 1;
    if (s.sinceImproved >= stopping.patience && s.step < total) s.stoppedAt = s.step;
  };
  /** A stream's seed for batch j of the step: j = 0 keeps the seed a step without accumulation draws. */
  const seedOf = (stream: number, j: number) =>
    j === 0 ? streamSeed(t.seed, stream, s.step) : streamSeed(t.seed, stream, s.step, j);
  await parallel.setStrategy(o.strategy);
  let windowStart = performance.now();
  // training.max_steps overrides epochs: as many epochs as its steps take, the last one cut where they end.
  const epochCount = t.max_steps ? Infinity : Math.ceil(t.epochs);
  const going = () => s.step < total && s.stoppedAt === undefined;
  for (; s.epoch < epochCount && going(); s.epoch++, s.batch = 0) {
    const order = new Rng(streamSeed(t.seed, STREAMS.order, s.epoch)).shuffle(Array.from({ length: n }, (_, i) => i));
    for (; s.batch < perEpoch && going();) {
      const stepStart = performance.now();
      // The step's batches: `accumulate` consecutive ones, fewer where the epoch ends first.
      const micro: MicroBatch[] = [];
      let examples = 0;
      for (let j = 0; j < accumulate && s.batch < perEpoch; j++, s.batch++) {
        const idx = order.slice(s.batch * t.batch_size, (s.batch + 1) * t.batch_size);
        const encs = idx.map((i) => o.train.encodings[i]);
        const seq = Math.max(...encs.map((e) => e.inputIds.length));
        const labels = idx.map((i) => o.train.labels[i]);
        micro.push({
          batch: batchOf(encs, seq, labels, o.padId),
          dropoutSeed: t.dropout ? seedOf(STREAMS.dropout, j) : null,
          stepSeed: seedOf(STREAMS.step, j),
        });
        examples += idx.length;
      }
      const { loss, norm } = await parallel.accumulate(micro);
      s.step++;
      if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
        if (t.on_nan === 'error')
          throw new RunError(
            `non-finite ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} at step ${s.step} (epoch ${s.epoch + 1})`,
            'Lower training.optimizer.lr, or set training.on_nan: skip_step to skip such updates.',
            'train',
          );
        s.skipped++;
      } else {
        const lr = learningRate(s.step - 1, total, t.optimizer.lr, warmup, t.schedule.kind);
        await parallel.update(lr, clipCoefficient(norm, t.max_grad_norm), o.strategy);
        await changeState(o.strategy, model, parallel);
        const logged = o.strategy.learningRate(parallel.moments.step) ?? lr;
        s.lastLoss = loss;
        s.window.lossSum += loss;
        s.window.lossCount++;
        s.window.examples += examples;
        if (s.step % t.log_every === 0 || s.step === total) {
          const now = performance.now();
          const dropped = keptFraction.dropped();
          log({
            kind: 'step',
            step: s.step,
            epoch: s.epoch + 1,
            loss: s.window.lossSum / s.window.lossCount,
            lr: logged,
            grad_norm: norm,
            kept_fraction: keptFraction.over(s.window.lossCount, dropped - (s.window.dropped ?? 0)),
            examples_per_s: (s.window.examples * 1000) / Math.max(1, now - windowStart),
          });
          s.window = { lossSum: 0, lossCount: 0, examples: 0, dropped };
          windowStart = now;
        }
      }
      o.onStep?.(s.step, total, loss, (examples * 1000) / Math.max(1e-3, performance.now() - stepStart));
      // The step's evaluation comes before its checkpoint, which then holds it (history, best, patience).
      if (every && s.step % every === 0 && s.step < total) await evaluation();
      await yieldToSignals();
      if (interruptRequested() && going()) {
        // A signal arrived: keep this step's state, so a resume loses nothing, and stop. After the last
        // step only the final evaluation is left, which a checkpoint cannot resume into: it runs to the end.
        await checkpoint();
        checkInterrupt('train');
      }
      if (t.checkpoint_every > 0 && s.step % t.checkpoint_every === 0 && going()) await checkpoint();
    }
    if (!every) await evaluation();
  }
  // Evaluating every N steps, the last step is evaluated too (unless early stopping just did).
  if (every && s.epochs.at(-1)?.step !== s.step) await evaluation();
  if (s.stoppedAt !== undefined) o.onStopped?.(s.stoppedAt);
  if (r.evaluation.checkpoint === 'best' && bestValues) {
    bestValues.forEach((v, i) => model.values[i].set(v));
    await parallel.reload();
  } else await parallel.syncToHost();
  const selectedBy = r.evaluation.checkpoint === 'best' && bestValues ? 'best' : 'last';
  const selected = selectedBy === 'best' ? bestIndex(s) : s.epochs.length - 1;
  return {
    steps: s.step,
    skippedSteps: s.skipped,
    epochs: s.epochs,
    bestEpoch: s.epochs[selected].epoch,
    selected,
    selectedBy,
    ...(s.stoppedAt !== undefined && { stoppedAt: s.stoppedAt }),
    finalLoss: s.lastLoss,
  };
}

/** The best evaluation's index: by its step, or (checkpoints from before evaluations had steps) by its epoch. */
const bestIndex = (s: LoopState) =>
  s.best.step === undefined
    ? s.epochs.findIndex((e) => e.epoch === s.best.epoch)
    : s.epochs.findIndex((e) => e.step === s.best.step);

/**
 * The fraction of all gradient elements a strategy keeps: fixed (vanilla, D's bitsets) or counted (F's drawn
 * masks), where the cumulative dropped count is taken at each log so the fraction covers exactly the logging window.
 */
function keptFractionOf(strategy: Strategy, model: EncoderClassifier) {
  const sizes = model.specs.map(sizeOf);
  const elements = sizes.reduce((a, b) => a + b, 0);
  const fractions = strategy.keptFractions(model.specs);
  const fixed = model.specs.reduce((a, spec, i) => a + fractions[spec.name] * sizes[i], 0) / elements;
  const counted = strategy.counts;
  return {
    dropped: () => (counted ? strategy.keptCounts().reduce((a, [, kept, total]) => a + total - kept, 0) : 0),
    over: (updates: number, dropped: number) => (counted ? 1 - dropped / (updates * elements) : fixed),
  };
}
