import { batchOf } from '../engine/batch.js';
import type { EncoderClassifier } from '../engine/model.js';
import { sizeOf, type ParamSpec } from '../engine/params.js';
import { streamSeed } from '../engine/rng.js';
import type { Encoding } from '../engine/tokenizer.js';
import { bitsetBytes, setBit } from '../engine/bitset.js';
import { kthLargestInPlace } from './select.js';
import type { TrainingPool } from '../engine/training-pool.js';
import type { ResolvedFisher } from './child-tuning-d/fisher-settings.js';
import { inScope, STREAMS } from './strategy.js';

export interface FisherStats {
  estimator: ResolvedFisher['estimator'];
  reserve_p: number;
  examples: number;
  passes: number;
  in_scope: number;
  kept: number;
  threshold: number;
  /** Elements equal to the threshold, and how many of them were kept (lowest flat index first). */
  ties: { at_threshold: number; kept: number };
  per_tensor: Record<string, number>;
  per_layer: Record<string, number>;
  /** Histogram of log10(Fisher) over in-scope elements (zeros counted apart). */
  histogram: { log10_edges: number[]; counts: number[]; zeros: number };
}

/**
 * Accumulates the Fisher information (squared gradients) over the training examples, in dataset order.
 * 'batch' follows the official code: per-batch gradients, each tensor clipped to `clip` in L2 norm, squared,
 * divided by the number of batches. 'per-example' is the paper's formula: each example's squared gradient,
 * averaged over examples (one example per thread at a time). Dropout is on, as the reference runs the pass
 * in training mode.
 */
export async function accumulateFisher(
  parallel: TrainingPool,
  specs: readonly ParamSpec[],
  data: { encodings: Encoding[]; labels: number[] },
  settings: ResolvedFisher,
  dropout: boolean,
  onBatch?: (done: number, total: number) => void,
  scoped: readonly boolean[] = specs.map((s) => inScope(s, settings.scope)),
): Promise<{ fisher: Float32Array[]; passes: number; examples: number }> {
  const n = Math.min(data.encodings.length, settings.max_samples ?? Infinity);
  const perExample = settings.estimator === 'per-example';
  const size = perExample ? 1 : settings.batch_size;
  const passes = Math.ceil(n / size);
  const batchAt = (start: number) => {
    const idx = Array.from({ length: Math.min(size, n - start) }, (_, k) => start + k);
    const encs = idx.map((i) => data.encodings[i]);
    return batchOf(
      encs,
      Math.max(...encs.map((e) => e.inputIds.length)),
      idx.map((i) => data.labels[i]),
    );
  };
  const clip = perExample ? 0 : settings.clip;
  const seedOf = (pass: number) => (dropout ? streamSeed(settings.seed, STREAMS.fisherDropout, pass) : null);
  let pass = 0;
  if (perExample) {
    for (; pass < passes; pass += parallel.threads) {
      const group = Array.from({ length: Math.min(parallel.threads, passes - pass) }, (_, k) => batchAt(pass + k));
      await parallel.gradientsEach(group, seedOf(pass));
      group.forEach((_, k) => parallel.addSquares(k, scoped, clip, passes));
      onBatch?.(Math.min(passes, pass + group.length), passes);
    }
  } else {
    for (; pass < passes; pass++) {
      await parallel.gradients(batchAt(pass * size), seedOf(pass));
      parallel.addSquares(0, scoped, clip, passes);
      onBatch?.(pass + 1, passes);
    }
  }
  const fisher = await parallel.takeSquares();
  return { fisher, passes, examples: n };
}

/**
 * Keeps exactly k = round(p * in-scope elements) (at least 1): everything above the k-th largest value, then
 * elements equal to it in flat order (tensor order, then index) until k is reached. The official code keeps
 * every element >= np.percentile(.., (1-p)*100), which keeps all ties and can overshoot k; the exact count is
 * what the paper's "top p" means. Selection is linear time (quickselect), not a sort. `scope`: a scope name, or per
 * tensor whether it is scored (Child-Tuning-D inside another strategy's trainable set).
 */
export function selectChild(
  model: EncoderClassifier,
  fisher: Float32Array[],
  reserveP: number,
  scope: ResolvedFisher['scope'] | readonly boolean[],
): { masks: (Uint8Array | undefined)[]; threshold: number; kept: number; inScope: number; ties: FisherStats['ties'] } {
  const specs = model.specs;
  const total = fisher.reduce((a, f) => a + f.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const f of fisher) {
    all.set(f, at);
    at += f.length;
  }
  const k = Math.max(1, Math.min(total, Math.round(reserveP * total)));
  // `all` is a scratch copy; the counts below do not depend on its order.
  const threshold = kthLargestInPlace(all, k);
  let above = 0;
  let equal = 0;
  for (let j = 0; j < total; j++) {
    if (all[j] > threshold) above++;
    else if (all[j] === threshold) equal++;
  }
  let tiesLeft = k - above;
  const tiesKept = tiesLeft;
  const scoped = typeof scope === 'string' ? specs.map((s) => inScope(s, scope)) : scope;
  const masks = specs.map((_, i) => {
    if (!scoped[i]) return undefined;
    const f = fisher[i];
    const bits = new Uint8Array(bitsetBytes(f.length));
    for (let j = 0; j < f.length; j++) {
      if (f[j] > threshold || (f[j] === threshold && tiesLeft-- > 0)) setBit(bits, j);
    }
    return bits;
  });
  return { masks, threshold, kept: k, inScope: total, ties: { at_threshold: equal, kept: tiesKept } };
}

export function fisherHistogram(fisher: Float32Array[], bins = 40): FisherStats['histogram'] {
  let lo = Infinity,
    hi = -Infinity,
    zeros = 0;
  for (const f of fisher)
    for (let j = 0; j < f.length; j++) {
      if (f[j] <= 0) {
        zeros++;
        continue;
      }
      const l = Math.log10(f[j]);
      if (l < lo) lo = l;
      if (l > hi) hi = l;
    }
  if (!Number.isFinite(lo)) return { log10_edges: [], counts: [], zeros };
  const width = (hi - lo) / bins || 1;
  const counts = new Array(bins).fill(0);
  for (const f of fisher)
    for (let j = 0; j < f.length; j++) {
      if (f[j] <= 0) continue;
      counts[Math.min(bins - 1, Math.floor((Math.log10(f[j]) - lo) / width))]++;
    }
  return { log10_edges: Array.from({ length: bins + 1 }, (_, i) => lo + i * width), counts, zeros };
}

/** Kept fraction per layer (encoder layers by index; embeddings and head by group). */
export function perLayer(model: EncoderClassifier, fractions: Record<string, number>): Record<string, number> {
  const acc = new Map<string, { kept: number; total: number }>();
  for (const s of model.specs) {
    const key = s.layer !== undefined ? `layer.${s.layer}` : s.group;
    const n = sizeOf(s);
    const e = acc.get(key) ?? { kept: 0, total: 0 };
    e.kept += fractions[s.name] * n;
    e.total += n;
    acc.set(key, e);
  }
  return Object.fromEntries([...acc].map(([k, v]) => [k, v.kept / v.total]));
}
