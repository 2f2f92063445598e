import { computeMetrics } from '../data/metrics.js';
import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { Encoding } from '../engine/tokenizer.js';
import { yieldToSignals } from './interrupt.js';
import type { RunPool } from './parallel.js';

/** The model's outputs for a list of encodings, one row of numLabels logits (one score for regression) per encoding. */
export async function logitsOf(
  parallel: RunPool,
  numLabels: number,
  encodings: Encoding[],
  batchSize: number,
  padId: number,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < encodings.length; start += batchSize) {
    const encs = encodings.slice(start, start + batchSize);
    const seq = Math.max(...encs.map((e) => e.inputIds.length));
    const logits = await parallel.infer('predict', batchOf(encs, seq, undefined, padId));
    await yieldToSignals();
    for (let i = 0; i < encs.length; i++) out.push(logits.slice(i * numLabels, (i + 1) * numLabels));
  }
  return out;
}

/** A row's prediction: the class with the largest logit (the first on a tie), or the score for regression. */
export function predictionOf(logits: Float32Array): number {
  if (logits.length === 1) return logits[0];
  let best = 0;
  for (let c = 1; c < logits.length; c++) if (logits[c] > logits[best]) best = c;
  return best;
}

/** Class probabilities of one row of logits (softmax, shifted by the largest logit so no exp overflows). */
export function softmax(logits: Float32Array): number[] {
  const max = Math.max(...logits);
  const e = Array.from(logits, (x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** Predictions for a list of encodings: class indices (argmax) or regression scores. */
export async function predict(
  parallel: RunPool,
  numLabels: number,
  encodings: Encoding[],
  batchSize: number,
  padId: number,
): Promise<number[]> {
  return (await logitsOf(parallel, numLabels, encodings, batchSize, padId)).map(predictionOf);
}

export async function evaluate(
  parallel: RunPool,
  numLabels: number,
  data: { encodings: Encoding[]; labels: number[] },
  metrics: readonly Metric[],
  batchSize: number,
  padId: number,
  labelMap?: (pred: number) => number,
) {
  let pred = await predict(parallel, numLabels, data.encodings, batchSize, padId);
  if (labelMap) pred = pred.map(labelMap);
  return computeMetrics(metrics, pred, data.labels);
}
