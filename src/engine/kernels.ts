import * as tf from '@tensorflow/tfjs-core';

/**
 * Kernels that route around slow tfjs paths on the CPU backends (measured on tfjs 4.22, see BENCHMARKS.md):
 * - wasm's batched matMul (batch > 1) falls back to a naive loop at about 1.5 GFLOP/s, while a 2-D matMul
 *   goes through XNNPACK at about 20; so on wasm a batched product is run as one 2-D product per batch entry.
 * - Operand transposes are done in JavaScript while splitting, because transposed matMul is 10-15x slower.
 * - Column sums (bias gradients) are a 1-row matMul: tf.sum over axis 0 is 15x slower on wasm.
 */
const splitBatches = () => tf.getBackend() === 'wasm';

/** a[i] x b[i] for every i, with optional transposes of the operands' last two axes. */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  if (!splitBatches()) return tf.matMul(transposeA ? tf.transpose(a, [0, 2, 1]) : a, transposeB ? tf.transpose(b, [0, 2, 1]) : b);
  const [n, ra, ca] = a.shape;
  const [, rb, cb] = b.shape;
  const av = a.dataSync() as Float32Array;
  const bv = b.dataSync() as Float32Array;
  // Tidy: the per-entry blocks and products are freed as soon as they are stacked.
  return tf.tidy(() => {
    const outs: tf.Tensor2D[] = [];
    for (let i = 0; i < n; i++) outs.push(tf.matMul(block(av, i, ra, ca, transposeA), block(bv, i, rb, cb, transposeB)));
    return tf.stack(outs) as tf.Tensor3D;
  });
}

function block(values: Float32Array, i: number, rows: number, cols: number, transpose: boolean): tf.Tensor2D {
  const src = values.subarray(i * rows * cols, (i + 1) * rows * cols);
  if (!transpose) return tf.tensor2d(src, [rows, cols]);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return tf.tensor2d(out, [cols, rows]);
}

/** Sum over rows: [n, m] -> [m]. */
export function columnSum(x: tf.Tensor2D): tf.Tensor1D {
  return tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]);
}

/** Rows of several tables summed per token, in JavaScript (the gather kernel is slow on wasm and its gradient missing). */
export function embeddingSum(tables: { values: Float32Array; rows: Int32Array }[], width: number, tokens: number): Float32Array {
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
