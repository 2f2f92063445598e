import * as tf from '@tensorflow/tfjs-core';
import type { Activation, ActivationCache } from './activation.js';
import type { Dense } from './dense.js';
import { sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';

type BottleneckCache = [T2, ActivationCache, T2];

/**
 * A bottleneck: scale * up(act(down(x))), plus x itself when `residual` (a module inserted after a sub-layer keeps
 * its input; one in parallel adds only its own output to the sub-layer's).
 */
export class Bottleneck implements Layer<BottleneckCache> {
  constructor(
    readonly down: Dense,
    readonly act: Activation,
    readonly up: Dense,
    readonly residual: boolean,
    readonly scale = 1,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const d = this.down.forward(x, ctx);
    const a = this.act.forward(d.y);
    const u = this.up.forward(a.y, ctx);
    const out = this.scale === 1 ? u.y : (tf.mul(u.y, this.scale) as T2);
    return { y: this.residual ? (tf.add(x, out) as T2) : out, cache: [d.cache, a.cache, u.cache] as BottleneckCache };
  }

  backward(dy: T2, [d, a, u]: BottleneckCache, ctx: BackwardContext): T2[] {
    const dout = this.scale === 1 ? dy : (tf.mul(dy, this.scale) as T2);
    const [da] = this.act.backward(sum(this.up.backward(dout, u, ctx)), a);
    const parts = this.down.backward(da, d, ctx);
    return this.residual ? [dy, ...parts] : parts;
  }
}
