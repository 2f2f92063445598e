import * as tf from '@tensorflow/tfjs-core';
import type { Activation, ActivationCache } from './activation.js';
import type { Dense } from './dense.js';
import { sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';
import { trains, type Param } from './param.js';

type BottleneckCache = [T2, ActivationCache, T2, T2];

/**
 * A bottleneck: scale * up(act(down(x))), plus x itself when `residual` (a module inserted after a sub-layer keeps
 * its input; one in parallel, or one reading the sub-layer's LayerNorm, adds only its own output). `scale` is a
 * constant or a trainable [1] parameter (AdapterHub's learned scaling).
 */
export class Bottleneck implements Layer<BottleneckCache> {
  constructor(
    readonly down: Dense,
    readonly act: Activation,
    readonly up: Dense,
    readonly residual: boolean,
    readonly scale: number | Param = 1,
  ) {}

  private factor(ctx: ForwardContext | BackwardContext): number | tf.Tensor {
    return typeof this.scale === 'number' ? this.scale : ctx.weight(this.scale);
  }

  forward(x: T2, ctx: ForwardContext) {
    const d = this.down.forward(x, ctx);
    const a = this.act.forward(d.y);
    const u = this.up.forward(a.y, ctx);
    const s = this.factor(ctx);
    const out = s === 1 ? u.y : (tf.mul(u.y, s) as T2);
    return {
      y: this.residual ? (tf.add(x, out) as T2) : out,
      cache: [d.cache, a.cache, u.cache, u.y] as BottleneckCache,
    };
  }

  backward(dy: T2, [d, a, u, up]: BottleneckCache, ctx: BackwardContext): T2[] {
    const s = this.factor(ctx);
    if (typeof this.scale !== 'number' && trains(this.scale.spec))
      ctx.emit(this.scale, tf.reshape(tf.sum(tf.mul(dy, up)), [1]));
    const dout = s === 1 ? dy : (tf.mul(dy, s) as T2);
    const [da] = this.act.backward(sum(this.up.backward(dout, u, ctx)), a);
    const parts = this.down.backward(da, d, ctx);
    return this.residual ? [dy, ...parts] : parts;
  }
}
