import { computeMetrics } from '../data/metrics.js';
import type { Metric } from '../data/tasks.js';
import { batchOf } from '../engine/batch.js';
import { Rng } from '../engine/rng.js';
import type { Encoding } from '../engine/tokenizer.js';
import type { PreparedSplit } from './data.js';
import type { RunPool } from './parallel.js';

/** First-token features of the frozen encoder, computed once per split and reused across probe epochs. */
async function featuresOf(
  parallel: RunPool,
  H: number,
  encodings: Encoding[],
  padId: number,
  batchSize = 64,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < encodings.length; start += batchSize) {
    const encs = encodings.slice(start, start + batchSize);
    const f = await parallel.infer(
      'features',
      batchOf(encs, Math.max(...encs.map((e) => e.inputIds.length)), undefined, padId),
    );
    for (let i = 0; i < encs.length; i++) out.push(f.subarray(i * H, (i + 1) * H));
  }
  return out;
}

/**
 * Task transfer: freeze the fine-tuned encoder and train a fresh linear head (softmax regression, or linear
 * regression for scores) on the target task with Adam, then evaluate it.
 */
export async function linearProbe(
  parallel: RunPool,
  H: number,
  train: PreparedSplit,
  dev: PreparedSplit,
  s: { epochs: number; lr: number; batch_size: number; seed: number },
  padId: number,
  metrics: readonly Metric[],
): Promise<Record<string, number>> {
  const C = train.spec.labels?.length ?? 1;
  const xs = await featuresOf(parallel, H, train.encodings, padId);
  const W = new Float32Array(H * C);
  const b = new Float32Array(C);
  const rng = new Rng(s.seed);
  for (let i = 0; i < W.length; i++) W[i] = rng.normal() * 0.02;
  const m = new Float32Array(W.length + C),
    v = new Float32Array(W.length + C);
  const g = new Float32Array(W.length + C);
  let t = 0;
  const scores = (x: Float32Array) => {
    const z = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      let acc = b[c];
      for (let h = 0; h < H; h++) acc += x[h] * W[h * C + c];
      z[c] = acc;
    }
    return z;
  };
  for (let epoch = 0; epoch < Math.ceil(s.epochs); epoch++) {
    const order = rng.shuffle(Array.from({ length: xs.length }, (_, i) => i));
    for (let start = 0; start < order.length; start += s.batch_size) {
      const idx = order.slice(start, start + s.batch_size);
      g.fill(0);
      for (const i of idx) {
        const z = scores(xs[i]);
        const dz = new Float32Array(C);
        if (C === 1) dz[0] = (2 * (z[0] - train.labels[i])) / idx.length;
        else {
          const max = Math.max(...z);
          let sum = 0;
          for (let c = 0; c < C; c++) sum += dz[c] = Math.exp(z[c] - max);
          for (let c = 0; c < C; c++) dz[c] = (dz[c] / sum - (c === train.labels[i] ? 1 : 0)) / idx.length;
        }
        for (let c = 0; c < C; c++) {
          for (let h = 0; h < H; h++) g[h * C + c] += xs[i][h] * dz[c];
          g[W.length + c] += dz[c];
        }
      }
      t++;
      for (let j = 0; j < g.length; j++) {
        m[j] = 0.9 * m[j] + 0.1 * g[j];
        v[j] = 0.999 * v[j] + 0.001 * g[j] * g[j];
        const update = (s.lr * (m[j] / (1 - 0.9 ** t))) / (Math.sqrt(v[j] / (1 - 0.999 ** t)) + 1e-8);
        if (j < W.length) W[j] -= update;
        else b[j - W.length] -= update;
      }
    }
  }
  const pred = (await featuresOf(parallel, H, dev.encodings, padId)).map((x) => {
    const z = scores(x);
    return C === 1 ? z[0] : z.indexOf(Math.max(...z));
  });
  return computeMetrics(metrics, pred, dev.labels);
}
