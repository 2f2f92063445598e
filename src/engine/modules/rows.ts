import * as tf from '@tensorflow/tfjs-core';
import type { T2 } from './module.js';

/** [B*P, H] rows before [B*T, H] rows, per sequence: [B*(P+T), H]. */
export function prependRows(prefix: T2, own: T2, B: number): T2 {
  const H = own.shape[1];
  return tf.reshape(tf.concat([tf.reshape(prefix, [B, -1, H]), tf.reshape(own, [B, -1, H])], 1), [-1, H]) as T2;
}

/** The inverse of prependRows for gradients: the first P rows of every sequence, and the rest. */
export function splitRows(x: T2, B: number, P: number): { prefix: T2; own: T2 } {
  const H = x.shape[1];
  const S = x.shape[0] / B;
  const r = tf.reshape(x, [B, S, H]);
  return {
    prefix: tf.reshape(tf.slice(r, [0, 0, 0], [B, P, H]), [B * P, H]) as T2,
    own: tf.reshape(tf.slice(r, [0, P, 0], [B, S - P, H]), [B * (S - P), H]) as T2,
  };
}
