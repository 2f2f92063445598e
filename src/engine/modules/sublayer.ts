import * as tf from '@tensorflow/tfjs-core';
import type { LayerNorm, LayerNormCache } from './layer-norm.js';
import { applyMask, sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';
import type { Param } from './param.js';

export interface SublayerCache {
  transform: unknown;
  mask: tf.Tensor | null;
  after: unknown[];
  afterNorm: { norm: LayerNormCache; module: unknown }[];
  parallel: unknown[];
  norm: LayerNormCache;
}

/**
 * A post-norm residual sub-layer: LayerNorm(dropout(transform(x)) + x). Modules inserted `after` run on the dropped
 * transform output z before the residual (a Houlsby adapter, which adds its own skip connection); `afterNorm`
 * modules read the sub-layer's own LayerNorm of z + x and their output is added to z (AdapterHub's
 * original_ln_before with residual_before_ln: a Pfeiffer adapter); `parallel` modules run on x and their output is
 * added to z (a parallel adapter).
 */
export class Sublayer implements Layer<SublayerCache> {
  readonly after: Layer[] = [];
  readonly afterNorm: Layer[] = [];
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
    const afterNorm = this.afterNorm.map((m) => {
      const n = this.norm.forward(tf.add(z, x) as T2, ctx);
      const r = m.forward(n.y, ctx);
      z = tf.add(z, r.y);
      return { norm: n.cache, module: r.cache };
    });
    const parallel = this.parallel.map((m) => {
      const r = m.forward(x, ctx);
      z = tf.add(z, r.y);
      return r.cache;
    });
    const n = this.norm.forward(tf.add(z, x) as T2, ctx);
    return { y: n.y, cache: { transform: t.cache, mask, after, afterNorm, parallel, norm: n.cache } };
  }

  backward(dy: T2, c: SublayerCache, ctx: BackwardContext): T2[] {
    // The LayerNorm may run more than once: its gradients are summed over its uses, then emitted once.
    const norm = summingContext(ctx);
    const [dsum] = this.norm.backward(dy, c.norm, norm.ctx);
    let dz = dsum;
    const dx = [dsum];
    for (let i = this.afterNorm.length - 1; i >= 0; i--) {
      const [dn] = this.norm.backward(
        sum(this.afterNorm[i].backward(dz, c.afterNorm[i].module, ctx)),
        c.afterNorm[i].norm,
        norm.ctx,
      );
      dz = tf.add(dz, dn);
      dx.push(dn);
    }
    norm.flush();
    for (let i = this.after.length - 1; i >= 0; i--) dz = sum(this.after[i].backward(dz, c.after[i], ctx));
    const parts = [...dx, ...this.transform.backward(applyMask(dz, c.mask), c.transform, ctx)];
    this.parallel.forEach((m, i) => parts.push(...m.backward(dsum, c.parallel[i], ctx)));
    return [sum(parts)];
  }
}

/** A backward context whose emitted gradients are added up per parameter until `flush` emits each sum once. */
function summingContext(ctx: BackwardContext) {
  const sums = new Map<Param, tf.Tensor>();
  return {
    ctx: {
      ...ctx,
      emit: (p: Param, g: tf.Tensor) => {
        const before = sums.get(p);
        sums.set(p, before ? tf.add(before, g) : g);
      },
    } as BackwardContext,
    flush: () => {
      for (const [p, g] of sums) ctx.emit(p, g);
    },
  };
}
