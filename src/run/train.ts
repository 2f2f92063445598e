import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { EncoderClassifier } from '../engine/model.js';
import { AdamW, clipGlobalNorm, learningRate } from '../engine/optimizer.js';
import { sizeOf } from '../engine/params.js';
import { Rng } from '../engine/rng.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { Strategy } from '../strategies/strategy.js';
import type { PreparedSplit } from './data.js';
import { RunError } from './errors.js';
import { evaluate } from './evaluate.js';

export interface LogEntry {
  kind: 'step' | 'eval';
  step: number;
  epoch: number;
  loss?: number;
  lr?: number;
  grad_norm?: number;
  examples_per_s?: number;
  metrics?: Record<string, number>;
}

export interface TrainResult {
  steps: number;
  skippedSteps: number;
  epochs: { epoch: number; metrics: Record<string, number> }[];
  bestEpoch: number;
  finalLoss: number;
  seconds: number;
  /** Weights of the best epoch when evaluation.checkpoint is 'best' (the model holds them on return). */
}

/** Number of optimizer steps a recipe's training takes over n examples. */
export const totalSteps = (n: number, r: Recipe) => Math.ceil(Math.ceil(n / r.training.batch_size) * r.training.epochs);

/**
 * The fine-tuning loop: seeded shuffling per epoch, dynamic padding, forward/backward, global-norm clipping,
 * the strategy's gradient mask inside AdamW, linear warmup/decay, evaluation after each epoch.
 * Same recipe, seed and backend give bit-identical losses.
 */
export function trainModel(o: {
  recipe: Recipe; model: EncoderClassifier; strategy: Strategy; train: PreparedSplit; dev: PreparedSplit; padId: number; metrics: Metric[];
  onLog?: (e: LogEntry) => void; onStep?: (step: number, total: number, loss: number, examplesPerSecond: number) => void;
}): TrainResult {
  const { recipe: r, model } = o;
  const t = r.training;
  const n = o.train.encodings.length;
  const perEpoch = Math.ceil(n / t.batch_size);
  const total = totalSteps(n, r);
  const warmup = Math.floor(t.schedule.warmup_ratio * total);
  const optimizer = new AdamW(model.specs, { lr: t.optimizer.lr, betas: t.optimizer.betas as [number, number], eps: t.optimizer.eps, weightDecay: t.optimizer.weight_decay });
  const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
  const root = new Rng(t.seed);
  const orderRng = root.fork(1);
  const dropoutRng = t.dropout ? root.fork(2) : null;
  const started = performance.now();
  const epochs: TrainResult['epochs'] = [];
  let best = { epoch: -1, score: -Infinity, values: undefined as Float32Array[] | undefined };
  let step = 0;
  let skipped = 0;
  let lossSum = 0, lossCount = 0, lastLoss = NaN;
  let windowStart = performance.now(), windowExamples = 0;
  const epochCount = Math.ceil(t.epochs);
  for (let epoch = 0; epoch < epochCount && step < total; epoch++) {
    const order = orderRng.shuffle(Array.from({ length: n }, (_, i) => i));
    for (let b = 0; b < perEpoch && step < total; b++) {
      const stepStart = performance.now();
      const idx = order.slice(b * t.batch_size, (b + 1) * t.batch_size);
      const encs = idx.map((i) => o.train.encodings[i]);
      const seq = Math.max(...encs.map((e) => e.inputIds.length));
      const { loss } = model.step(batchOf(encs, seq, idx.map((i) => o.train.labels[i]), o.padId), grads, dropoutRng);
      const norm = clipGlobalNorm(grads, t.max_grad_norm);
      step++;
      if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
        if (t.on_nan === 'error') throw new RunError(`non-finite ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} at step ${step} (epoch ${epoch + 1})`, 'Lower training.optimizer.lr, or set training.on_nan: skip_step to skip such updates.', 'train');
        skipped++;
        continue;
      }
      const lr = learningRate(step - 1, total, t.optimizer.lr, warmup, t.schedule.kind);
      optimizer.update(model.values, grads, lr, o.strategy);
      model.markDirty();
      lastLoss = loss;
      lossSum += loss;
      lossCount++;
      windowExamples += idx.length;
      if (step % t.log_every === 0 || step === total) {
        const now = performance.now();
        const eps = (windowExamples * 1000) / Math.max(1, now - windowStart);
        o.onLog?.({ kind: 'step', step, epoch: epoch + 1, loss: lossSum / lossCount, lr, grad_norm: norm, examples_per_s: eps });
        lossSum = lossCount = windowExamples = 0;
        windowStart = now;
      }
      o.onStep?.(step, total, loss, (idx.length * 1000) / Math.max(1e-3, performance.now() - stepStart));
    }
    const metrics = evaluate(model, o.dev, o.metrics, r.evaluation.batch_size, o.padId);
    epochs.push({ epoch: epoch + 1, metrics });
    o.onLog?.({ kind: 'eval', step, epoch: epoch + 1, metrics });
    const score = metrics[o.metrics[0]];
    if (r.evaluation.checkpoint === 'best' && score > best.score) best = { epoch: epoch + 1, score, values: model.values.map((v) => Float32Array.from(v)) };
  }
  if (r.evaluation.checkpoint === 'best' && best.values) {
    best.values.forEach((v, i) => model.values[i].set(v));
    model.markDirty();
  }
  return { steps: step, skippedSteps: skipped, epochs, bestEpoch: r.evaluation.checkpoint === 'best' ? best.epoch : epochs.length, finalLoss: lastLoss, seconds: (performance.now() - started) / 1000 };
}
