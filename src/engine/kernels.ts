import * as tf from '@tensorflow/tfjs-core';
import { stridedMatMul, wasmColumnSum, wasmGelu, wasmKernelsActive, type Layout } from './wasm-kernels.js';

/**
 * Products and reductions of the step, routed around slow tfjs paths on the CPU backends (tfjs 4.22, see
 * BENCHMARKS.md). On wasm they run our strided kernels in place (wasm-kernels.ts): transposed operands and
 * attention heads are addressed by strides, never copied. Elsewhere they are tfjs ops with explicit
 * transposes, because transposed matMul is 10-15x slower than transpose + matMul on the cpu backend.
 */

type T2 = tf.Tensor2D;

/** a x b for 2-D tensors, with optional transposes. */
export function matMul(a: T2, b: T2, transposeA = false, transposeB = false): T2 {
  if (!wasmKernelsActive())
    return tf.tidy(() => tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b));
  const [ra, ca] = a.shape;
  const [rb, cb] = b.shape;
  const [M, K, N] = [transposeA ? ca : ra, transposeA ? ra : ca, transposeB ? rb : cb];
  const rowMajor = (cols: number): Layout => ({ entry: [0, 0], row: cols, col: 1 });
  return stridedMatMul(a, b, {
    entries: [1, 1],
    M,
    K,
    N,
    a: transposeA ? transposed(rowMajor(ca)) : rowMajor(ca),
    b: transposeB ? transposed(rowMajor(cb)) : rowMajor(cb),
    c: rowMajor(N),
    shape: [M, N],
  }) as T2;
}

/**
 * Sizes of an attention block: batch, query rows per sequence, heads, head width (hidden = heads x head width), and
 * key rows per sequence when keys and values have more rows than queries (a key/value prefix); S defaults to T.
 */
export interface Heads {
  B: number;
  T: number;
  A: number;
  D: number;
  S?: number;
}

/** Head h of sequence b of a [B*rows, A*D] activation, as a rows x D matrix. */
const headLayout = (rows: number, { A, D }: Heads): Layout => ({ entry: [rows * A * D, D], row: A * D, col: 1 });
const transposed = (l: Layout): Layout => ({ entry: l.entry, row: l.col, col: l.row });

/** Per head, x_bh y_bh^T: [B*T, H] x [B*S, H] -> [B, A, T, S] (attention scores, and their gradient). */
export function headScores(x: T2, y: T2, h: Heads): tf.Tensor4D {
  const { B, T, A, D } = h;
  const S = h.S ?? T;
  if (!wasmKernelsActive()) {
    const split = (t: T2, rows: number) =>
      tf.reshape(tf.transpose(tf.reshape(t, [B, rows, A, D]), [0, 2, 1, 3]), [B * A, rows, D]);
    return tf.tidy(() => tf.reshape(tf.matMul(split(x, T), tf.transpose(split(y, S), [0, 2, 1])), [B, A, T, S]));
  }
  return stridedMatMul(x, y, {
    entries: [B, A],
    M: T,
    K: D,
    N: S,
    a: headLayout(T, h),
    b: transposed(headLayout(S, h)),
    c: { entry: [A * T * S, T * S], row: S },
    shape: [B, A, T, S],
  }) as tf.Tensor4D;
}

/**
 * Per head, p_bh y_bh: [B, A, T, S] x [B*S, H] -> [B*T, H] (context, and the query gradient), or p_bh^T y_bh:
 * [B, A, T, S] x [B*T, H] -> [B*S, H] (the key and value gradients).
 */
export function headContext(p: tf.Tensor4D, y: T2, h: Heads, transposeP = false): T2 {
  const { B, T, A, D } = h;
  const S = h.S ?? T;
  const [inRows, outRows] = transposeP ? [T, S] : [S, T];
  if (!wasmKernelsActive()) {
    return tf.tidy(() => {
      const split = tf.reshape(tf.transpose(tf.reshape(y, [B, inRows, A, D]), [0, 2, 1, 3]), [B * A, inRows, D]);
      const pp = tf.reshape(p, [B * A, T, S]);
      const prod = tf.matMul(transposeP ? tf.transpose(pp, [0, 2, 1]) : pp, split);
      return tf.reshape(tf.transpose(tf.reshape(prod, [B, A, outRows, D]), [0, 2, 1, 3]), [B * outRows, A * D]);
    });
  }
  const scores: Layout = { entry: [A * T * S, T * S], row: S, col: 1 };
  return stridedMatMul(p, y, {
    entries: [B, A],
    M: outRows,
    K: inRows,
    N: D,
    a: transposeP ? transposed(scores) : scores,
    b: headLayout(inRows, h),
    c: headLayout(outRows, h),
    shape: [B * outRows, A * D],
  }) as T2;
}

/** Sum over rows: [n, m] -> [m]. On the cpu backend a 1-row matMul, because tf.sum over axis 0 is slow there. */
export function columnSum(x: T2): tf.Tensor1D {
  if (wasmKernelsActive()) return wasmColumnSum(x);
  return tf.tidy(() => tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]));
}

/** Erf-GELU, y = x Phi(x), with its derivative Phi(x) + x phi(x) for the backward pass (one exponential on wasm). */
export function gelu(x: T2): { y: T2; dydx: tf.Tensor } {
  if (wasmKernelsActive() && x.size % 4 === 0) return wasmGelu(x);
  return tidyKeep(() => {
    const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
    return {
      y: tf.mul(x, cdf) as T2,
      dydx: tf.add(cdf, tf.mul(x, tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), 1 / Math.sqrt(2 * Math.PI)))),
    };
  });
}

/** Rows of several tables summed per token, in JavaScript (the gather kernel is slow on wasm and its gradient missing). */
export function embeddingSum(
  tables: { values: Float32Array; rows: Int32Array }[],
  width: number,
  tokens: number,
): Float32Array {
  const out = new Float32Array(tokens * width);
  for (const { values, rows } of tables) {
    for (let t = 0; t < tokens; t++) {
      const src = rows[t] * width;
      const dst = t * width;
      for (let j = 0; j < width; j++) out[dst + j] += values[src + j];
    }
  }
  return out;
}

/** tf.tidy for a function returning a typed bundle of tensors (tidy's own typing only knows TensorContainer). */
export const tidyKeep = <T>(fn: () => T): T => tf.tidy(fn as () => tf.TensorContainer) as T;
