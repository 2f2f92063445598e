import * as tf from '@tensorflow/tfjs-core';
import type { T2 } from './module.js';

/** [B*P, H] rows before [B*T, H] rows, per sequence: [B*(P+T), H]. */
export function prependRows(prefix: T2, own: T2, B: number): T2 {
  const H = own.shape[1];
  return tf.reshape(tf.concat([tf.reshape(prefix, [B, -1, H]), tf.reshape(own, [B, -1, H])], 1), [-1, H]) as T2;
}

/** The inverse of prependRows for gradients: the first P rows of every sequence, and the rest. */
export function splitRows(x: T2, B: number, P: number): { prefix: T2; own: T2 } {
  const S = x.shape[0] / B;
  return { prefix: takeRows(x, sequenceRows(B, S, 0, P)), own: takeRows(x, sequenceRows(B, S, P, S)) };
}

/** Rows [from, to) of each of B sequences of S rows, as row numbers of their [B*S, H] matrix. */
export function sequenceRows(B: number, S: number, from: number, to: number): Int32Array {
  const out = new Int32Array(B * (to - from));
  for (let b = 0, k = 0; b < B; b++) for (let j = from; j < to; j++) out[k++] = b * S + j;
  return out;
}

/**
 * The given rows of x, in that order. A gather: tfjs's slice on wasm first copies its whole input to a fresh
 * JavaScript array (BackendWasm.readSync), whose page faults cost milliseconds a step at bert-tiny's sizes.
 */
export function takeRows(x: T2, rows: Int32Array): T2 {
  return tf.gather(x, tf.tensor1d(rows, 'int32')) as T2;
}
