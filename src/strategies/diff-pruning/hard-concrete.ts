import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../../engine/rng.js';

/**
 * The reference's hard-concrete gate (dguo98/DiffPruning run_glue_diffpruning.py, concrete_stretched and its
 * arguments' defaults): temperature 1, stretched to [LOWER, UPPER] = [-1.5, 1.5] before the clamp to [0, 1].
 */
export const LOWER = -1.5;
export const UPPER = 1.5;
/** The reference clamps the uniform noise to [1e-4, 1 - 1e-4] (so the logistic noise stays within about 9.2). */
export const U_MIN = 0.0001;
export const U_MAX = 0.9999;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** One uniform draw as the reference clamps it; draws are taken in element order. */
function uniform(rng: Rng) {
  return Math.min(U_MAX, Math.max(U_MIN, (rng.nextU32() + 0.5) / 4294967296));
}

/**
 * Gates z = min(1, max(0, s (UPPER - LOWER) + LOWER)) for the elements' log_alpha. Training (`rng`): s =
 * sigmoid(log u - log(1 - u) + log_alpha), u uniform as the reference clamps it; `dz` is dz/dlog_alpha,
 * (UPPER - LOWER) s (1 - s) strictly inside the clamp and 0 outside. Testing (no rng): s = sigmoid(log_alpha),
 * the deterministic gate the saved model merges.
 */
export function hardConcrete(logAlpha: Float32Array, rng: Rng | null): { z: Float32Array; dz: Float32Array } {
  const z = new Float32Array(logAlpha.length);
  const dz = new Float32Array(logAlpha.length);
  for (let i = 0; i < logAlpha.length; i++) {
    let s: number;
    if (rng) {
      const u = uniform(rng);
      s = sigmoid(Math.log(u) - Math.log(1 - u) + logAlpha[i]);
    } else s = sigmoid(logAlpha[i]);
    const stretched = s * (UPPER - LOWER) + LOWER;
    z[i] = Math.min(1, Math.max(0, stretched));
    dz[i] = rng && stretched > 0 && stretched < 1 ? (UPPER - LOWER) * s * (1 - s) : 0;
  }
  return { z, dz };
}

/**
 * hardConcrete on a GPU, where log_alpha lives: the same uniform draws, taken on the host in element order as the
 * logistic noise log u - log(1 - u), and the same formulas as tensors (float32). Also the L0 penalty's gradient,
 * times `weight`, when training.
 */
export function hardConcreteOnDevice(logAlpha: tf.Tensor, rng: Rng | null, weight: number) {
  return tf.tidy(() => {
    if (!rng) {
      const s = tf.sigmoid(logAlpha);
      return {
        z: tf.clipByValue(tf.add(tf.mul(s, UPPER - LOWER), LOWER), 0, 1),
        dz: tf.zerosLike(s),
        penalty: tf.zerosLike(s),
      };
    }
    const noise = new Float32Array(logAlpha.size);
    for (let i = 0; i < noise.length; i++) {
      const u = uniform(rng);
      noise[i] = Math.log(u) - Math.log(1 - u);
    }
    const s = tf.sigmoid(tf.add(tf.tensor(noise, logAlpha.shape), logAlpha));
    const stretched = tf.add(tf.mul(s, UPPER - LOWER), LOWER);
    const inside = tf.logicalAnd(tf.greater(stretched, 0), tf.less(stretched, 1));
    const slope = tf.mul(tf.mul(s, tf.sub(1, s)), UPPER - LOWER);
    const p = tf.sigmoid(tf.sub(logAlpha, L0_SHIFT));
    return {
      z: tf.clipByValue(stretched, 0, 1),
      dz: tf.where(inside, slope, tf.zerosLike(slope)),
      penalty: tf.mul(tf.mul(p, tf.sub(1, p)), weight),
    };
  });
}

/** The reference's log_ratio, log(-LOWER / UPPER) (0 for its symmetric stretch): each element's L0 term is sigmoid(log_alpha - it). */
export const L0_SHIFT = Math.log(-LOWER / UPPER);

/** The L0 penalty's terms summed: sigmoid(log_alpha - L0_SHIFT) per gate (the reference's l0_pen). */
export function expectedL0(logAlpha: Float32Array): number {
  let total = 0;
  for (const a of logAlpha) total += sigmoid(a - L0_SHIFT);
  return total;
}

/** d(L0 penalty)/dlog_alpha per element, added into `grad` times `weight`. */
export function addExpectedL0Gradient(logAlpha: Float32Array, grad: Float32Array, weight: number) {
  for (let i = 0; i < logAlpha.length; i++) {
    const p = sigmoid(logAlpha[i] - L0_SHIFT);
    grad[i] += weight * p * (1 - p);
  }
}
