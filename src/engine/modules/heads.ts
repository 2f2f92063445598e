import type * as tf from '@tensorflow/tfjs-core';
import type { Activation, ActivationCache } from './activation.js';
import { applyMask, sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';

export interface HeadCache {
  before: tf.Tensor | null;
  dense: unknown;
  activation: ActivationCache;
  after: tf.Tensor | null;
  out: unknown;
}

/**
 * A sequence-classification head on the first token's hidden state: [dropout], dense, activation, dropout,
 * output projection. BERT's is the tanh pooler plus `classifier` (no dropout before the pooler); RoBERTa's and
 * ELECTRA's are `classifier.dense` and `classifier.out_proj` with dropout before the dense (tanh and GELU).
 */
export class ClassificationHead implements Layer<HeadCache> {
  /** Whether the output projection's input is dropped out (a modifier may turn it off: Mixout replaces it). */
  dropoutAfter = true;

  constructor(
    public dense: Layer,
    readonly activation: Activation,
    public out: Layer,
    public dropoutBefore: boolean,
    readonly width: number,
  ) {}

  /** Also gives the activated dense output (BERT's pooled output) for inspection. */
  forward(cls: T2, ctx: ForwardContext) {
    const B = cls.shape[0];
    const before = this.dropoutBefore ? ctx.dropout([B, this.width], 'hidden') : null;
    const d = this.dense.forward(applyMask(cls, before), ctx);
    const a = this.activation.forward(d.y);
    const after = this.dropoutAfter ? ctx.dropout([B, this.width], 'hidden') : null;
    const o = this.out.forward(applyMask(a.y, after), ctx);
    return { y: o.y, pooled: a.y, cache: { before, dense: d.cache, activation: a.cache, after, out: o.cache } };
  }

  backward(dlogits: T2, c: HeadCache, ctx: BackwardContext): T2[] {
    const dpooled = sum(this.out.backward(dlogits, c.out, ctx));
    const [dz] = this.activation.backward(applyMask(dpooled, c.after), c.activation);
    return [applyMask(sum(this.dense.backward(dz, c.dense, ctx)), c.before)];
  }
}
