import { computeMetrics } from '../data/metrics.js';
import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import type { EncoderClassifier } from '../engine/model.js';
import type { Encoding } from '../engine/tokenizer.js';

/** Predictions for a list of encodings: class indices (argmax) or regression scores. */
export function predict(model: EncoderClassifier, encodings: Encoding[], batchSize: number, padId: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < encodings.length; start += batchSize) {
    const encs = encodings.slice(start, start + batchSize);
    const seq = Math.max(...encs.map((e) => e.inputIds.length));
    const { logits } = model.predict(batchOf(encs, seq, undefined, padId));
    const C = model.numLabels;
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

export function evaluate(model: EncoderClassifier, data: { encodings: Encoding[]; labels: number[] }, metrics: readonly Metric[], batchSize: number, padId: number, labelMap?: (pred: number) => number, goldMap?: (gold: number) => number) {
  let pred = predict(model, data.encodings, batchSize, padId);
  if (labelMap) pred = pred.map(labelMap);
  const gold = goldMap ? data.labels.map(goldMap) : data.labels;
  return computeMetrics(metrics, pred, gold);
}
