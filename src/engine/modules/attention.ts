import * as tf from '@tensorflow/tfjs-core';
import { headContext, headScores, tidyKeep, type Heads } from '../kernels.js';
import { prependRows, splitRows } from './rows.js';
import { sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';

/**
 * Key and value rows put before every sequence's own in one layer's attention (prefix tuning): every query may attend
 * to them. `forward` gives [batch * length, hidden] keys and values; `backward` takes their gradients.
 */
export interface KeyValuePrefix<C = unknown> {
  readonly length: number;
  forward(batch: number, ctx: ForwardContext): { keys: T2; values: T2; cache: C };
  backward(dkeys: T2, dvalues: T2, cache: C, ctx: BackwardContext): void;
}

interface Projected {
  y: T2;
  cache: unknown;
}

export interface AttentionCache {
  q: Projected;
  k: Projected;
  v: Projected;
  /** Keys and values as attended to: the projections, after the prefix rows when there is a prefix. */
  keys: T2;
  values: T2;
  prefix?: unknown;
  probs: tf.Tensor4D;
  mask: tf.Tensor | null;
  probsDropped: tf.Tensor4D;
  out: Projected;
}

/**
 * Multi-head self-attention with its output projection: the transform of BERT's attention sub-layer. q, k, v and the
 * context stay [B*T, H]; the head products address each head in place (kernels.ts). The four projections are
 * layers of their own, so a modifier can wrap any of them.
 */
export class SelfAttention implements Layer<AttentionCache> {
  prefix?: KeyValuePrefix;

  constructor(
    public query: Layer,
    public key: Layer,
    public value: Layer,
    public output: Layer,
    readonly numHeads: number,
    readonly hidden: number,
  ) {}

  private heads(ctx: ForwardContext): Heads {
    if (!ctx.sequence) throw new Error('self-attention runs inside an encoder, which gives it the sequences');
    const s = ctx.sequence;
    return {
      B: s.batch,
      T: s.length,
      A: this.numHeads,
      D: this.hidden / this.numHeads,
      S: s.length + (this.prefix?.length ?? 0),
    };
  }

  forward(x: T2, ctx: ForwardContext) {
    const heads = this.heads(ctx);
    const { B, T, A, D } = heads;
    const S = heads.S!;
    const q = this.query.forward(x, ctx);
    const k = this.key.forward(x, ctx);
    const v = this.value.forward(x, ctx);
    let keys = k.y;
    let values = v.y;
    let bias = ctx.sequence!.bias;
    let prefix: unknown;
    if (this.prefix) {
      const p = this.prefix.forward(B, ctx);
      keys = prependRows(p.keys, k.y, B);
      values = prependRows(p.values, v.y, B);
      bias = tf.concat([tf.zeros([B, 1, 1, this.prefix.length]), bias], 3);
      prefix = p.cache;
    }
    const scores = tf.add(tf.mul(headScores(q.y, keys, heads), 1 / Math.sqrt(D)), bias);
    const probs = tf.softmax(scores) as tf.Tensor4D;
    const mask = ctx.dropout([B, A, T, S], 'attention');
    const probsDropped = (mask ? tf.mul(probs, mask) : probs) as tf.Tensor4D;
    const context = headContext(probsDropped, values, heads);
    const out = this.output.forward(context, ctx);
    return { y: out.y, cache: { q, k, v, keys, values, prefix, probs, mask, probsDropped, out } };
  }

  backward(dy: T2, s: AttentionCache, ctx: BackwardContext): T2[] {
    const dctx = sum(this.output.backward(dy, s.out.cache, ctx));
    const T = s.q.y.shape[0] / (s.probs.shape[0] as number);
    const heads: Heads = {
      B: s.probs.shape[0],
      T,
      A: this.numHeads,
      D: this.hidden / this.numHeads,
      S: s.probs.shape[3],
    };
    const { dq, dk, dv } = tidyKeep(() => {
      let dprobs = headScores(dctx, s.values, heads);
      if (s.mask) dprobs = tf.mul(dprobs, s.mask);
      const dscores = tf.mul(
        tf.mul(s.probs, tf.sub(dprobs, tf.sum(tf.mul(dprobs, s.probs), -1, true))),
        1 / Math.sqrt(heads.D),
      ) as tf.Tensor4D;
      return {
        dv: headContext(s.probsDropped, dctx, heads, true),
        dq: headContext(dscores, s.keys, heads),
        dk: headContext(dscores, s.q.y, heads, true),
      };
    });
    let [dkOwn, dvOwn] = [dk, dv];
    if (this.prefix) {
      const P = this.prefix.length;
      const dkParts = splitRows(dk, heads.B, P);
      const dvParts = splitRows(dv, heads.B, P);
      this.prefix.backward(dkParts.prefix, dvParts.prefix, s.prefix, ctx);
      [dkOwn, dvOwn] = [dkParts.own, dvParts.own];
    }
    const gq = this.query.backward(dq, s.q.cache, ctx);
    const gk = this.key.backward(dkOwn, s.k.cache, ctx);
    const gv = this.value.backward(dvOwn, s.v.cache, ctx);
    return [...gq, ...gk, ...gv];
  }
}
