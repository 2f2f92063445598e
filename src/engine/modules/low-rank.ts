import * as tf from '@tensorflow/tfjs-core';
import { matMul } from '../kernels.js';
import { applyMask, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';
import type { Param } from './param.js';

interface LowRankCache {
  inner: unknown;
  /** The low-rank path's input (after its dropout), and A's output. */
  x: T2;
  ax: T2;
  mask: tf.Tensor | null;
}

/**
 * y = inner(x) + scale * B (A dropout(x)) around any layer (LoRA's update path, Hu et al. 2022), with A [r, in] and
 * B [out, r] as saved ([in, r] and [r, out] in the engine). The inner layer is left as it is (frozen or not). The
 * dropout mask (rate `dropout`, on the path's input only) is drawn from the step's stream (ctx.rng) when the step
 * draws dropout at all, so reruns draw the same masks; prediction draws none.
 */
export class LowRankUpdate implements Layer<LowRankCache> {
  constructor(
    readonly inner: Layer,
    readonly a: Param,
    readonly b: Param,
    readonly scale: number,
    readonly dropout = 0,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const inner = this.inner.forward(x, ctx);
    const mask = ctx.rng && this.dropout > 0 ? tf.tensor(ctx.rng.dropoutMask(x.size, this.dropout), x.shape) : null;
    const dropped = applyMask(x, mask);
    const ax = matMul(dropped, ctx.weight(this.a) as T2);
    return {
      y: tf.add(inner.y, tf.mul(matMul(ax, ctx.weight(this.b) as T2), this.scale)) as T2,
      cache: { inner: inner.cache, x: dropped, ax, mask },
    };
  }

  backward(dy: T2, c: LowRankCache, ctx: BackwardContext): T2[] {
    const parts = this.inner.backward(dy, c.inner, ctx);
    const scaled = tf.mul(dy, this.scale) as T2;
    if (this.b.spec.trainable !== false) ctx.emit(this.b, matMul(c.ax, scaled, true));
    const dax = matMul(scaled, ctx.weight(this.b) as T2, false, true);
    if (this.a.spec.trainable !== false) ctx.emit(this.a, matMul(c.x, dax, true));
    return [...parts, applyMask(matMul(dax, ctx.weight(this.a) as T2, false, true), c.mask)];
  }
}

/**
 * W + scale * B A in the engine layout: `w` [in, out] gets scale * (a [in, r] times b [r, out]) added, each sum
 * over the rank taken in float64 and rounded once.
 */
export function mergeLowRank(w: Float32Array, a: Float32Array, b: Float32Array, rank: number, scale: number) {
  const out = b.length / rank;
  const inDim = a.length / rank;
  const merged = Float32Array.from(w);
  for (let i = 0; i < inDim; i++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += a[i * rank + k] * b[k * out + o];
      merged[i * out + o] = w[i * out + o] + scale * s;
    }
  return merged;
}
