import * as tf from '@tensorflow/tfjs-core';
import {
  stridedMatMul,
  wasmColumnSum,
  wasmDropoutMask,
  wasmGatedGradients,
  wasmGatedValue,
  wasmGates,
  wasmGelu,
  wasmHeapView,
  wasmKernelsActive,
  wasmLayerNorm,
  wasmLayerNormBackward,
  type GateConstants,
  type GatedGradientInputs,
  type Layout,
} from './wasm-kernels.js';
import { keepThreshold, type Rng } from './rng.js';
import { nativeKernels, type AddIndexedRows } from './native.js';

export type { GateConstants };

/**
 * Products and reductions of the step, routed around slow tfjs paths on the CPU backends (tfjs 4.22, see
 * BENCHMARKS.md). On wasm they run our strided kernels in place (wasm-kernels.ts): transposed operands and
 * attention heads are addressed by strides, never copied. Elsewhere they are tfjs ops with explicit
 * transposes, because transposed matMul is 10-15x slower than transpose + matMul on the cpu backend; except on
 * webgpu, whose matMul reads a transposed operand in place: a transpose there is one more pass over memory (on
 * SwiftShader a third of a BERT-tiny step went to them).
 */

type T2 = tf.Tensor2D;

/** tf.matMul with transposed operands, which only webgpu's matMul reads in place. */
function tfMatMul<R extends tf.Rank>(a: tf.Tensor<R>, b: tf.Tensor<R>, transposeA: boolean, transposeB: boolean) {
  if (tf.getBackend() === 'webgpu') return tf.matMul(a, b, transposeA, transposeB);
  const swapLast = (t: tf.Tensor<R>) => tf.transpose(t, t.rank === 2 ? [1, 0] : [0, 2, 1]);
  return tf.matMul(transposeA ? swapLast(a) : a, transposeB ? swapLast(b) : b);
}

/** a x b for 2-D tensors, with optional transposes; with `bias` ([N]) added to every row of the product. */
export function matMul(a: T2, b: T2, transposeA = false, transposeB = false, bias?: tf.Tensor): T2 {
  if (!wasmKernelsActive())
    return tf.tidy((): T2 => {
      const product = tfMatMul(a, b, transposeA, transposeB);
      return (bias ? tf.add(product, bias) : product) as T2;
    });
  const [ra, ca] = a.shape;
  const [rb, cb] = b.shape;
  const [M, K, N] = [transposeA ? ca : ra, transposeA ? ra : ca, transposeB ? rb : cb];
  const rowMajor = (cols: number): Layout => ({ entry: [0, 0], row: cols, col: 1 });
  return stridedMatMul(
    a,
    b,
    {
      entries: [1, 1],
      M,
      K,
      N,
      a: transposeA ? transposed(rowMajor(ca)) : rowMajor(ca),
      b: transposeB ? transposed(rowMajor(cb)) : rowMajor(cb),
      c: rowMajor(N),
      shape: [M, N],
    },
    bias,
  ) as T2;
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
    return tf.tidy(() => tf.reshape(tfMatMul(split(x, T), split(y, S), false, true), [B, A, T, S]));
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
      const prod = tfMatMul(pp, split, transposeP, false);
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

/**
 * LayerNorm over the last axis: y = xhat g + b with xhat = (x - mean) / sqrt(var + eps), and what its backward reads
 * (xhat and 1/std, [rows, 1]). On wasm one pass per row in the same float32 operations and order as these tfjs ops,
 * so the same bits (kernels.wat layerNorm).
 */
export function layerNorm(x: T2, g: tf.Tensor, b: tf.Tensor, eps: number): { y: T2; xhat: T2; rstd: tf.Tensor } {
  if (wasmKernelsActive()) return wasmLayerNorm(x, g, b, eps);
  return tidyKeep(() => {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    const xhat = tf.mul(xc, rstd) as T2;
    return { y: tf.add(tf.mul(xhat, g), b) as T2, xhat, rstd };
  });
}

/** LayerNorm's backward from dy: the input's gradient, and the gain's and bias's where asked for (as layerNorm, one pass on wasm). */
export function layerNormBackward(
  dy: T2,
  g: tf.Tensor,
  xhat: T2,
  rstd: tf.Tensor,
  gainGradient: boolean,
  biasGradient: boolean,
): { dx: T2; dg?: tf.Tensor1D; db?: tf.Tensor1D } {
  if (wasmKernelsActive()) return wasmLayerNormBackward(dy, g, xhat, rstd, gainGradient, biasGradient);
  return tidyKeep(() => {
    const dxhat = tf.mul(dy, g);
    const dx = tf.mul(
      rstd,
      tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true))),
    ) as T2;
    return {
      dx,
      dg: gainGradient ? columnSum(tf.mul(dy, xhat) as T2) : undefined,
      db: biasGradient ? columnSum(dy) : undefined,
    };
  });
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

/** 32-bit draws as an int32 tensor, bits unchanged (the wasm kernels read them as unsigned). */
const drawsTensor = (draws: Uint32Array, shape: number[]) =>
  tf.tensor(new Int32Array(draws.buffer, draws.byteOffset, draws.length), shape, 'int32');

/** Training's uniforms from 32-bit draws r: f32(r) 2^-32 clamped to [uMin, uMax], in float32 as the wasm kernel makes them. */
function gateUniforms(draws: Uint32Array, k: GateConstants): Float32Array {
  const [lo, hi] = [Math.fround(k.uMin), Math.fround(k.uMax)];
  const u = new Float32Array(draws.length);
  for (let i = 0; i < u.length; i++) {
    const x = Math.fround(draws[i]) * 2 ** -32;
    u[i] = x < lo ? lo : x > hi ? hi : x;
  }
  return u;
}

/**
 * Hard-concrete gates (L0 regularisation, Louizos et al. 2018) for log_alpha `a`: z = clamp(s (upper - lower) +
 * lower, 0, 1) with s = u / (u + (1 - u) exp(-a)) for training uniforms u, one per element from its 32-bit draw
 * (sigmoid(a + log u - log(1 - u)) with one exponential), s = sigmoid(a) without draws. Training also gives dz/da,
 * (upper - lower) s (1 - s) strictly inside the clamp and 0 outside, and the L0 term's gradient lambda p (1 - p), p =
 * sigmoid(a - log l0Scale); zeros without draws. One pass on wasm (float32, kernels.wat); tfjs ops with the same
 * formulas elsewhere.
 */
export function hardConcreteGates(a: tf.Tensor, draws: Uint32Array | null, k: GateConstants) {
  if (wasmKernelsActive() && a.size % 4 === 0) {
    const raw = draws && drawsTensor(draws, a.shape);
    const gates = wasmGates(a, raw, k);
    raw?.dispose();
    return gates;
  }
  return tf.tidy(() => {
    const e = tf.exp(tf.neg(a));
    const u = draws && tf.tensor(gateUniforms(draws, k), a.shape);
    const s = u ? tf.div(u, tf.add(u, tf.mul(tf.sub(1, u), e))) : tf.sigmoid(a);
    const stretched = tf.add(tf.mul(s, k.upper - k.lower), k.lower);
    const z = tf.clipByValue(stretched, 0, 1);
    if (!u) return { z, dz: tf.zerosLike(a), penalty: tf.zerosLike(a) };
    const inside = tf.logicalAnd(tf.greater(stretched, 0), tf.less(stretched, 1));
    const slope = tf.mul(tf.mul(s, tf.sub(1, s)), k.upper - k.lower);
    const p = tf.reciprocal(tf.add(1, tf.mul(e, k.l0Scale)));
    return {
      z,
      dz: tf.where(inside, slope, tf.zerosLike(slope)),
      penalty: tf.mul(tf.mul(p, tf.sub(1, p)), k.lambda),
    };
  });
}

/** A gated difference's value base + (scale z) delta, `scale` a [1] tensor (a whole tensor's gate). */
export function gatedValue(base: tf.Tensor, delta: tf.Tensor, z: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  if (wasmKernelsActive() && base.size % 4 === 0) return wasmGatedValue(base, delta, z, scale);
  return tf.tidy(() => tf.add(base, tf.mul(tf.mul(scale, z), delta)));
}

/**
 * A gated difference's backward from g, the gradient by its value base + (scale z) delta: the difference's gradient
 * g (scale z), the gates' (g delta)(scale dz) + penalty, and `sum`, sum(g delta z) as a [1] tensor (the whole
 * tensor's gate's gradient before its own dz). The sum is taken in float64 on wasm.
 */
export function gatedGradients(inputs: GatedGradientInputs): { delta: tf.Tensor; logAlpha: tf.Tensor; sum: tf.Tensor } {
  if (wasmKernelsActive() && inputs.g.size % 4 === 0) return wasmGatedGradients(inputs);
  const { g, delta, z, dz, penalty, scale } = inputs;
  return tf.tidy(() => {
    const gd = tf.mul(g, delta);
    return {
      delta: tf.mul(g, tf.mul(scale, z)),
      logAlpha: tf.add(tf.mul(gd, tf.mul(scale, dz)), penalty),
      sum: tf.reshape(tf.sum(tf.mul(gd, z)), [1]),
    };
  });
}

/**
 * A dropout keep mask of `shape` at `rate`, kept elements scaled by 1 / (1 - rate): rng.dropoutMask's values from
 * the same draws. On wasm the draws go to the heap as they are (half the bytes of the mask) and are expanded there.
 */
export function dropoutMask(rng: Rng, shape: number[], rate: number): tf.Tensor {
  const n = tf.util.sizeFromShape(shape);
  if (!wasmKernelsActive()) return tf.tensor(rng.dropoutMask(n, rate), shape);
  const { threshold, scale } = keepThreshold(1 - rate);
  const d = rng.u32s((n + 1) >> 1);
  const draws = drawsTensor(d, [d.length]);
  const mask = wasmDropoutMask(draws, shape, threshold, scale);
  draws.dispose();
  return mask;
}

/** A float32 tensor's values to read at once (before any other tensor is made or freed): on wasm a heap view, no copy. */
export function readNow(t: tf.Tensor): Float32Array {
  return wasmKernelsActive() && t.dtype === 'float32' ? wasmHeapView(t) : (t.dataSync() as Float32Array);
}

/**
 * Rows of several tables summed per token on the host, table by table (tfjs's gather is slow on wasm and has no
 * gradient there).
 */
export function embeddingSum(
  tables: { values: Float32Array; rows: Int32Array }[],
  width: number,
  tokens: number,
): Float32Array {
  const out = new Float32Array(tokens * width);
  for (const { values, rows } of tables) addIndexedRows(out, null, values, rows, tokens, width, 1);
  return out;
}

/**
 * The embedding sum gathers a table's rows with it, the backward scatters a gradient into a table's. With weight 1
 * each add is a float32 add, else in doubles rounded once; the native pass gives the same bits.
 */
export const addIndexedRows: AddIndexedRows = (dst, dstRows, src, srcRows, n, width, weight) => {
  const native = nativeKernels().native?.addIndexedRows;
  if (native) return native(dst, dstRows, src, srcRows, n, width, weight);
  for (let t = 0; t < n; t++) {
    const d = (dstRows ? dstRows[t] : t) * width;
    const s = (srcRows ? srcRows[t] : t) * width;
    if (weight === 1) for (let j = 0; j < width; j++) dst[d + j] += src[s + j];
    else for (let j = 0; j < width; j++) dst[d + j] += weight * src[s + j];
  }
};

/** tf.tidy for a function returning a typed bundle of tensors (tidy's own typing only knows TensorContainer). */
export const tidyKeep = <T>(fn: () => T): T => tf.tidy(fn as () => tf.TensorContainer) as T;
