import * as tf from '@tensorflow/tfjs-core';
import { columnSum, matMul, tidyKeep } from '../kernels.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from './module.js';
import { emits, type Param } from './param.js';

/** y = x w + b, with w in the engine layout [in, out]. */
export const denseForward = (x: T2, w: tf.Tensor, b: tf.Tensor) => matMul(x, w as T2, false, false, b);

/** Backward of y = x w + b: dw = x^T dy and db = column sums of dy (each only when asked), dx = dy w^T. */
export function denseBackward(x: T2, w: tf.Tensor, dy: T2, want: { dw: boolean; db: boolean }) {
  return tidyKeep(() => ({
    dw: want.dw ? matMul(x, dy, true) : undefined,
    db: want.db ? columnSum(dy) : undefined,
    dx: matMul(dy, w as T2, false, true),
  }));
}

/** A dense layer owning its weight and bias; its cache is its input. A frozen weight's gradient is not computed. */
export class Dense implements Layer<T2> {
  constructor(
    readonly weight: Param,
    readonly bias: Param,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    return { y: denseForward(x, ctx.weight(this.weight), ctx.weight(this.bias)), cache: x };
  }

  backward(dy: T2, x: T2, ctx: BackwardContext): T2[] {
    const g = denseBackward(x, ctx.weight(this.weight), dy, {
      dw: emits(this.weight.spec),
      db: emits(this.bias.spec),
    });
    if (g.dw) ctx.emit(this.weight, g.dw);
    if (g.db) ctx.emit(this.bias, g.db);
    return [g.dx];
  }
}
