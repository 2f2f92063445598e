import * as tf from '@tensorflow/tfjs-core';
import type { LayerNorm, LayerNormCache } from './layer-norm.js';
import { applyMask, sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';

export interface SublayerCache {
  transform: unknown;
  mask: tf.Tensor | null;
  after: unknown[];
  parallel: unknown[];
  norm: LayerNormCache;
}

/**
 * A post-norm residual sub-layer: LayerNorm(dropout(transform(x)) + x). Modules inserted `after` run on the dropped
 * transform output before the residual (a Houlsby or Pfeiffer adapter, which adds its own skip connection);
 * `parallel` modules run on x and their output is added to the transform's (a parallel adapter).
 */
export class Sublayer implements Layer<SublayerCache> {
  readonly after: Layer[] = [];
  readonly parallel: Layer[] = [];

  constructor(
    public transform: Layer,
    readonly norm: LayerNorm,
    readonly width: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const t = this.transform.forward(x, ctx);
    const mask = ctx.dropout([x.shape[0], this.width], 'hidden');
    let z = applyMask(t.y, mask);
    const after = this.after.map((m) => {
      const r = m.forward(z, ctx);
      z = r.y;
      return r.cache;
    });
    const parallel = this.parallel.map((m) => {
      const r = m.forward(x, ctx);
      z = tf.add(z, r.y);
      return r.cache;
    });
    const n = this.norm.forward(tf.add(z, x) as T2, ctx);
    return { y: n.y, cache: { transform: t.cache, mask, after, parallel, norm: n.cache } };
  }

  backward(dy: T2, c: SublayerCache, ctx: BackwardContext): T2[] {
    const [dsum] = this.norm.backward(dy, c.norm, ctx);
    let dz = dsum;
    for (let i = this.after.length - 1; i >= 0; i--) dz = sum(this.after[i].backward(dz, c.after[i], ctx));
    const parts = [dsum, ...this.transform.backward(applyMask(dz, c.mask), c.transform, ctx)];
    this.parallel.forEach((m, i) => parts.push(...m.backward(dsum, c.parallel[i], ctx)));
    return [sum(parts)];
  }
}
