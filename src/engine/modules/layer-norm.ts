import * as tf from '@tensorflow/tfjs-core';
import { columnSum, tidyKeep } from '../kernels.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from './module.js';
import { emits, type Param } from './param.js';

export interface LayerNormCache {
  xhat: T2;
  rstd: tf.Tensor;
}

/** LayerNorm over the last axis with a gain and a bias; its backward reads the normalised input and 1/std. */
export class LayerNorm implements Layer<LayerNormCache> {
  constructor(
    readonly gain: Param,
    readonly bias: Param,
    readonly eps: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const g = ctx.weight(this.gain);
    const b = ctx.weight(this.bias);
    return tidyKeep(() => {
      const mean = tf.mean(x, -1, true);
      const xc = tf.sub(x, mean);
      const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), this.eps));
      const xhat = tf.mul(xc, rstd) as T2;
      return { y: tf.add(tf.mul(xhat, g), b) as T2, cache: { xhat, rstd } };
    });
  }

  backward(dy: T2, cache: LayerNormCache, ctx: BackwardContext): T2[] {
    const g = ctx.weight(this.gain);
    const out = tidyKeep(() => {
      const dxhat = tf.mul(dy, g);
      const dx = tf.mul(
        cache.rstd,
        tf.sub(
          tf.sub(dxhat, tf.mean(dxhat, -1, true)),
          tf.mul(cache.xhat, tf.mean(tf.mul(dxhat, cache.xhat), -1, true)),
        ),
      ) as T2;
      return {
        dx,
        dg: emits(this.gain.spec) ? columnSum(tf.mul(dy, cache.xhat) as T2) : undefined,
        db: emits(this.bias.spec) ? columnSum(dy) : undefined,
      };
    });
    if (out.dg) ctx.emit(this.gain, out.dg);
    if (out.db) ctx.emit(this.bias, out.db);
    return [out.dx];
  }
}
