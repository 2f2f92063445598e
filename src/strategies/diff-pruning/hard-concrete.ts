import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../../engine/rng.js';

/** The hard-concrete distribution's constants (Louizos et al., 2018): temperature and the stretch interval. */
export const BETA = 2 / 3;
export const GAMMA = -0.1;
export const ZETA = 1.1;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Gates z = min(1, max(0, s (zeta - gamma) + gamma)) for the elements' log_alpha. Training (`rng`): s =
 * sigmoid((log u - log(1 - u) + log_alpha) / beta) with u ~ U(0, 1) drawn in element order; `dz` is dz/dlog_alpha,
 * (zeta - gamma) s (1 - s) / beta inside the stretch's clamp and 0 outside. Testing (no rng): s = sigmoid(log_alpha),
 * the deterministic gate the saved model merges.
 */
export function hardConcrete(logAlpha: Float32Array, rng: Rng | null): { z: Float32Array; dz: Float32Array } {
  const z = new Float32Array(logAlpha.length);
  const dz = new Float32Array(logAlpha.length);
  for (let i = 0; i < logAlpha.length; i++) {
    let s: number;
    if (rng) {
      // u in (0, 1): a draw of exactly 0 would make log u infinite.
      const u = (rng.nextU32() + 0.5) / 4294967296;
      s = sigmoid((Math.log(u) - Math.log(1 - u) + logAlpha[i]) / BETA);
    } else s = sigmoid(logAlpha[i]);
    const stretched = s * (ZETA - GAMMA) + GAMMA;
    z[i] = Math.min(1, Math.max(0, stretched));
    dz[i] = rng && stretched > 0 && stretched < 1 ? ((ZETA - GAMMA) * s * (1 - s)) / BETA : 0;
  }
  return { z, dz };
}

/**
 * hardConcrete on a GPU, where log_alpha lives: the same uniform draws, taken on the host in element order as the
 * logistic noise log u - log(1 - u), and the same formulas as tensors (float32). Also the expected L0 norm's
 * gradient, times `weight`, when training.
 */
export function hardConcreteOnDevice(logAlpha: tf.Tensor, rng: Rng | null, weight: number) {
  return tf.tidy(() => {
    if (!rng) {
      const s = tf.sigmoid(logAlpha);
      return {
        z: tf.clipByValue(tf.add(tf.mul(s, ZETA - GAMMA), GAMMA), 0, 1),
        dz: tf.zerosLike(s),
        penalty: tf.zerosLike(s),
      };
    }
    const noise = new Float32Array(logAlpha.size);
    for (let i = 0; i < noise.length; i++) {
      const u = (rng.nextU32() + 0.5) / 4294967296;
      noise[i] = Math.log(u) - Math.log(1 - u);
    }
    const s = tf.sigmoid(tf.div(tf.add(tf.tensor(noise, logAlpha.shape), logAlpha), BETA));
    const stretched = tf.add(tf.mul(s, ZETA - GAMMA), GAMMA);
    const inside = tf.logicalAnd(tf.greater(stretched, 0), tf.less(stretched, 1));
    const slope = tf.div(tf.mul(tf.mul(s, tf.sub(1, s)), ZETA - GAMMA), BETA);
    const p = tf.sigmoid(tf.sub(logAlpha, L0_SHIFT));
    return {
      z: tf.clipByValue(stretched, 0, 1),
      dz: tf.where(inside, slope, tf.zerosLike(slope)),
      penalty: tf.mul(tf.mul(p, tf.sub(1, p)), weight),
    };
  });
}

/** The shift in P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta)), an element's term of the expected L0 norm. */
export const L0_SHIFT = BETA * Math.log(-GAMMA / ZETA);

/** P(z_i != 0) for each element, summed: the expected L0 norm of the gated difference. */
export function expectedL0(logAlpha: Float32Array): number {
  let total = 0;
  for (const a of logAlpha) total += sigmoid(a - L0_SHIFT);
  return total;
}

/** d(expected L0)/dlog_alpha per element, added into `grad` times `weight`. */
export function addExpectedL0Gradient(logAlpha: Float32Array, grad: Float32Array, weight: number) {
  for (let i = 0; i < logAlpha.length; i++) {
    const p = sigmoid(logAlpha[i] - L0_SHIFT);
    grad[i] += weight * p * (1 - p);
  }
}
