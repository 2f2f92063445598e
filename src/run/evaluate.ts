import { computeMetrics } from '../data/metrics.js';
import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { Encoding } from '../engine/tokenizer.js';
import { yieldToSignals } from './interrupt.js';
import type { RunPool } from './parallel.js';

/** Predictions for a list of encodings: class indices (argmax) or regression scores. */
export async function predict(
  parallel: RunPool,
  numLabels: number,
  encodings: Encoding[],
  batchSize: number,
  padId: number,
): Promise<number[]> {
  const out: number[] = [];
  const C = numLabels;
  for (let start = 0; start < encodings.length; start += batchSize) {
    const encs = encodings.slice(start, start + batchSize);
    const seq = Math.max(...encs.map((e) => e.inputIds.length));
    const logits = await parallel.infer('predict', batchOf(encs, seq, undefined, padId));
    await yieldToSignals();
    for (let i = 0; i < encs.length; i++) {
      if (C === 1) out.push(logits[i]);
      else {
        let best = 0;
        for (let c = 1; c < C; c++) if (logits[i * C + c] > logits[i * C + best]) best = c;
        out.push(best);
      }
    }
  }
  return out;
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
