import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { EncoderClassifier } from '../engine/model.js';
import { sizeOf } from '../engine/params.js';
import { clipCoefficient, learningRate } from '../engine/optimizer.js';
import { Rng, streamSeed } from '../engine/rng.js';
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
}

/**
 * Everything the loop needs to continue exactly where it stopped, besides the weights and Adam moments.
 * Random streams are derived from (seed, purpose, step or epoch), so no generator state is needed.
 */
export interface LoopState {
  /** Steps taken, skipped ones included. */
  step: number;
  /** Epoch and batch position of the next step. */
  epoch: number;
  batch: number;
  skipped: number;
  lastLoss: number;
  /** The loss-logging window in progress; `dropped`: F's masked-out gradient elements before it began. */
  window: { lossSum: number; lossCount: number; examples: number; dropped?: number };
  epochs: { epoch: number; metrics: Record<string, number> }[];
  best: { epoch: number; score: number };
  /** Lines of metrics.jsonl written when this state was taken. */
  metricsLines: number;
  /** Child-Tuning-F's kept counts per tensor so far (for mask-stats.json). */
  kept: [number, number, number][];
}

export interface TrainResult {
  steps: number;
  skippedSteps: number;
  epochs: { epoch: number; metrics: Record<string, number> }[];
  bestEpoch: number;
  finalLoss: number;
}

/** Number of optimizer steps a recipe's training takes over n examples. */
export const totalSteps = (n: number, r: Recipe) => Math.ceil(Math.ceil(n / r.training.batch_size) * r.training.epochs);

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

/** A checkpoint to continue from: loop state, plus the best epoch's weights when evaluation.checkpoint is 'best'. */
export interface Resume {
  state: LoopState;
  bestValues?: Float32Array[];
}

/**
 * The fine-tuning loop: seeded shuffling per epoch, dynamic padding, forward/backward on every thread,
 * global-norm clipping, the strategy's mask inside AdamW, linear warmup/decay, evaluation after each epoch,
 * and a checkpoint every `training.checkpoint_every` steps (and when a signal asks the run to stop). Same recipe, seed, backend and thread count give
 * bit-identical losses, whether or not the run was interrupted and resumed.
 */
export async function trainModel(o: {
  recipe: Recipe;
  model: EncoderClassifier;
  parallel: RunPool;
  strategy: Strategy;
  train: PreparedSplit;
  dev: PreparedSplit;
  padId: number;
  metrics: Metric[];
  resume?: Resume;
  onLog?: (e: LogEntry) => void;
  onStep?: (step: number, total: number, loss: number, examplesPerSecond: number) => void;
  onCheckpoint?: (state: LoopState, bestValues: Float32Array[] | undefined) => void;
}): Promise<TrainResult> {
  const { recipe: r, model, parallel } = o;
  const t = r.training;
  const n = o.train.encodings.length;
  const perEpoch = Math.ceil(n / t.batch_size);
  const total = totalSteps(n, r);
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
  await parallel.setStrategy(o.strategy);
  let windowStart = performance.now();
  const epochCount = Math.ceil(t.epochs);
  for (; s.epoch < epochCount && s.step < total; s.epoch++, s.batch = 0) {
    const order = new Rng(streamSeed(t.seed, STREAMS.order, s.epoch)).shuffle(Array.from({ length: n }, (_, i) => i));
    for (; s.batch < perEpoch && s.step < total;) {
      const stepStart = performance.now();
      const idx = order.slice(s.batch * t.batch_size, (s.batch + 1) * t.batch_size);
      const encs = idx.map((i) => o.train.encodings[i]);
      const seq = Math.max(...encs.map((e) => e.inputIds.length));
      const { loss, norm } = await parallel.gradients(
        batchOf(
          encs,
          seq,
          idx.map((i) => o.train.labels[i]),
          o.padId,
        ),
        t.dropout ? streamSeed(t.seed, STREAMS.dropout, s.step) : null,
        streamSeed(t.seed, STREAMS.step, s.step),
      );
      s.step++;
      s.batch++;
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
        s.window.examples += idx.length;
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
      o.onStep?.(s.step, total, loss, (idx.length * 1000) / Math.max(1e-3, performance.now() - stepStart));
      await yieldToSignals();
      if (interruptRequested() && s.step < total) {
        // A signal arrived: keep this step's state, so a resume loses nothing, and stop. After the last
        // step only the final evaluation is left, which a checkpoint cannot resume into: it runs to the end.
        await checkpoint();
        checkInterrupt('train');
      }
      if (t.checkpoint_every > 0 && s.step % t.checkpoint_every === 0 && s.step < total) await checkpoint();
    }
    const metrics = await evaluate(parallel, model.numLabels, o.dev, o.metrics, r.evaluation.batch_size, o.padId);
    s.epochs.push({ epoch: s.epoch + 1, metrics });
    log({ kind: 'eval', step: s.step, epoch: s.epoch + 1, metrics });
    const score = metrics[o.metrics[0]];
    if (r.evaluation.checkpoint === 'best' && score > s.best.score) {
      s.best = { epoch: s.epoch + 1, score };
      await parallel.syncToHost();
      bestValues = model.values.map((v) => Float32Array.from(v));
    }
  }
  if (r.evaluation.checkpoint === 'best' && bestValues) {
    bestValues.forEach((v, i) => model.values[i].set(v));
    await parallel.reload();
  } else await parallel.syncToHost();
  return {
    steps: s.step,
    skippedSteps: s.skipped,
    epochs: s.epochs,
    bestEpoch: r.evaluation.checkpoint === 'best' ? s.best.epoch : s.epochs.length,
    finalLoss: s.lastLoss,
  };
}

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
