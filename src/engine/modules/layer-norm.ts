import * as tf from '@tensorflow/tfjs-core';
import { layerNorm, layerNormBackward } from '../kernels.js';
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
    const { y, xhat, rstd } = layerNorm(x, ctx.weight(this.gain), ctx.weight(this.bias), this.eps);
    return { y, cache: { xhat, rstd } };
  }

  backward(dy: T2, cache: LayerNormCache, ctx: BackwardContext): T2[] {
    const { dx, dg, db } = layerNormBackward(
      dy,
      ctx.weight(this.gain),
      cache.xhat,
      cache.rstd,
      emits(this.gain.spec),
      emits(this.bias.spec),
    );
    if (dg) ctx.emit(this.gain, dg);
    if (db) ctx.emit(this.bias, db);
    return [dx];
  }
}
