import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from './rng.js';

/**
 * A consistency term over a second, perturbed pass of the same batch: noise on every embedding element, and
 * `weight` times a distance between the clean and the perturbed outputs, with its gradient through both passes.
 * The distance is the symmetric KL between the two softmaxes for classification and the squared difference for
 * regression (a softmax over one score is constant).
 */
export interface ConsistencyTerm {
  /** The term's weight; 0 runs no second pass. */
  weight: number;
  /** Each noise element is uniform in [-sigma, sigma], or normal with standard deviation sigma. */
  noise: 'uniform' | 'normal';
  sigma: number;
  /**
   * Whether the perturbed pass's gradient reaches the word-embedding table. false: its word embeddings are
   * constants there (fairseq's R3F adds the noise to detached embeddings), so the table learns from the clean pass
   * only; the other tables, the LayerNorm and everything above still get both passes' gradients.
   */
  noisyWordGradient: boolean;
}

/** n noise elements as the term says, drawn in order from `rng`. */
export function embeddingNoise(term: ConsistencyTerm, n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  if (term.noise === 'uniform') for (let i = 0; i < n; i++) out[i] = (2 * rng.next() - 1) * term.sigma;
  else for (let i = 0; i < n; i++) out[i] = rng.normal() * term.sigma;
  return out;
}

/** A distance's batch mean and its gradients with respect to both outputs. */
export interface Distance {
  value: number;
  dclean: Float32Array;
  dnoisy: Float32Array;
}

/**
 * Batch mean of KL(p||q) + KL(q||p), p and q the softmaxes of rows of `clean` and `noisy` ([rows, k]), in float64.
 * Per row, with d = log p - log q: the value is sum (p - q) d, its gradient p (d - p.d) + p - q by the clean scores
 * and q (q.d - d) + q - p by the noisy ones.
 */
export function symmetricKl(clean: Float32Array, noisy: Float32Array, k: number): Distance {
  const rows = clean.length / k;
  const dclean = new Float32Array(clean.length);
  const dnoisy = new Float32Array(clean.length);
  let value = 0;
  const p = new Float64Array(k);
  const q = new Float64Array(k);
  const lp = new Float64Array(k);
  const lq = new Float64Array(k);
  for (let r = 0; r < rows; r++) {
    logSoftmax(clean, r * k, k, lp, p);
    logSoftmax(noisy, r * k, k, lq, q);
    let pd = 0;
    let qd = 0;
    for (let j = 0; j < k; j++) {
      const d = lp[j] - lq[j];
      value += (p[j] - q[j]) * d;
      pd += p[j] * d;
      qd += q[j] * d;
    }
    for (let j = 0; j < k; j++) {
      const d = lp[j] - lq[j];
      dclean[r * k + j] = (p[j] * (d - pd) + p[j] - q[j]) / rows;
      dnoisy[r * k + j] = (q[j] * (qd - d) + q[j] - p[j]) / rows;
    }
  }
  return { value: value / rows, dclean, dnoisy };
}

/** Batch mean of the squared difference of the outputs (regression), and its gradients. */
export function squaredDifference(clean: Float32Array, noisy: Float32Array): Distance {
  const n = clean.length;
  const dclean = new Float32Array(n);
  const dnoisy = new Float32Array(n);
  let value = 0;
  for (let i = 0; i < n; i++) {
    const diff = clean[i] - noisy[i];
    value += diff * diff;
    dclean[i] = (2 * diff) / n;
    dnoisy[i] = (-2 * diff) / n;
  }
  return { value: value / n, dclean, dnoisy };
}

function logSoftmax(x: Float32Array, at: number, k: number, logp: Float64Array, p: Float64Array) {
  let max = -Infinity;
  for (let j = 0; j < k; j++) max = Math.max(max, x[at + j]);
  let total = 0;
  for (let j = 0; j < k; j++) total += Math.exp(x[at + j] - max);
  const log = Math.log(total) + max;
  for (let j = 0; j < k; j++) {
    logp[j] = x[at + j] - log;
    p[j] = Math.exp(logp[j]);
  }
}

/** A distance on a GPU: the same formulas as symmetricKl and squaredDifference, as tensors (float32). */
export interface DeviceDistance {
  value: tf.Scalar;
  dclean: tf.Tensor2D;
  dnoisy: tf.Tensor2D;
}

/** symmetricKl over [rows, k] logits on the device, for a GPU pass that cannot read the logits mid-step. */
export function symmetricKlOnDevice(clean: tf.Tensor2D, noisy: tf.Tensor2D): DeviceDistance {
  const rows = clean.shape[0];
  const [lp, lq] = [tf.logSoftmax(clean), tf.logSoftmax(noisy)];
  const [p, q] = [tf.exp(lp), tf.exp(lq)];
  const d = tf.sub(lp, lq);
  const pd = tf.sum(tf.mul(p, d), 1, true);
  const qd = tf.sum(tf.mul(q, d), 1, true);
  return {
    value: tf.div(tf.sum(tf.mul(tf.sub(p, q), d)), rows) as tf.Scalar,
    dclean: tf.div(tf.add(tf.mul(p, tf.sub(d, pd)), tf.sub(p, q)), rows) as tf.Tensor2D,
    dnoisy: tf.div(tf.add(tf.mul(q, tf.sub(qd, d)), tf.sub(q, p)), rows) as tf.Tensor2D,
  };
}

/** squaredDifference on the device. */
export function squaredDifferenceOnDevice(clean: tf.Tensor2D, noisy: tf.Tensor2D): DeviceDistance {
  const n = clean.size;
  const diff = tf.sub(clean, noisy);
  return {
    value: tf.div(tf.sum(tf.square(diff)), n) as tf.Scalar,
    dclean: tf.mul(diff, 2 / n) as tf.Tensor2D,
    dnoisy: tf.mul(diff, -2 / n) as tf.Tensor2D,
  };
}
