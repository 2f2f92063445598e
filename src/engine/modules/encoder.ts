import * as tf from '@tensorflow/tfjs-core';
import { tidyKeep } from '../kernels.js';
import { prependRows, splitRows } from './rows.js';
import { tensorsOf, type BackwardContext, type ForwardContext, type Layer, type Sequence, type T2 } from './module.js';
import type { Sublayer, SublayerCache } from './sublayer.js';

/** One transformer layer: the attention sub-layer, then the feed-forward sub-layer. */
export class EncoderLayer implements Layer<[SublayerCache, SublayerCache]> {
  constructor(
    readonly attention: Sublayer,
    readonly feedForward: Sublayer,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const a = this.attention.forward(x, ctx);
    const f = this.feedForward.forward(a.y, ctx);
    return { y: f.y, cache: [a.cache, f.cache] as [SublayerCache, SublayerCache] };
  }

  backward(dy: T2, [a, f]: [SublayerCache, SublayerCache], ctx: BackwardContext): T2[] {
    return this.attention.backward(this.feedForward.backward(dy, f, ctx)[0], a, ctx);
  }
}

/**
 * Rows put before every sequence's embeddings (prompt tuning): [batch * length, hidden] from `forward`, their
 * gradient to `backward`. Every query may attend to them; the classifier still pools the sequence's own first token.
 */
export interface InputPrefix<C = unknown> {
  readonly length: number;
  forward(batch: number, ctx: ForwardContext): { rows: T2; cache: C };
  backward(drows: T2, cache: C, ctx: BackwardContext): void;
}

export interface EncoderCache {
  layers: unknown[];
  prefix?: unknown;
  batch: number;
}

/**
 * The layer stack. Each layer's forward runs in its own tidy that keeps only what its backward reads, and each
 * layer's cache is freed as soon as its backward is done, so the heap's peak is the weights plus one pass's cached
 * activations rather than every intermediate of the step.
 */
export class Encoder {
  inputPrefix?: InputPrefix;

  constructor(readonly layers: EncoderLayer[]) {}

  /** Rows before each sequence's own tokens in the output (the input prefix's length). */
  get offset() {
    return this.inputPrefix?.length ?? 0;
  }

  /** x: [B*T, H] embeddings; mask: the batch's attention mask [B*T]. Returns [B*(offset+T), H]. */
  forward(x: T2, mask: Float32Array, batch: number, ctx: ForwardContext): { y: T2; cache: EncoderCache } {
    let prefix: unknown;
    let admitted = tf.tensor1d(mask);
    if (this.inputPrefix) {
      const p = this.inputPrefix.forward(batch, ctx);
      x = prependRows(p.rows, x, batch);
      admitted = tf.reshape(tf.concat([tf.ones([batch, this.offset]), tf.reshape(admitted, [batch, -1])], 1), [-1]);
      prefix = p.cache;
    }
    const length = x.shape[0] / batch;
    // (1 - mask) * -1e9 added to every query row: padded keys get zero attention.
    const bias = tf.reshape(tf.mul(tf.sub(1, admitted), -1e9), [batch, 1, 1, length]) as tf.Tensor4D;
    const sequence: Sequence = { batch, length, bias };
    const inner: ForwardContext = { ...ctx, sequence };
    const layers: unknown[] = [];
    for (const layer of this.layers) {
      const r = tidyKeep(() => layer.forward(x, inner));
      layers.push(r.cache);
      x = r.y;
    }
    return { y: x, cache: { layers, prefix, batch } };
  }

  /** dy: the output's gradient; returns the gradient at the embeddings (frees each layer's cache on the way). */
  backward(dy: T2, c: EncoderCache, ctx: BackwardContext): T2 {
    let dx = dy;
    for (let l = this.layers.length - 1; l >= 0; l--) {
      const upstream = dx;
      // Per-layer tidy: only dx outlives it; the parameter gradients leave as they are made.
      dx = tidyKeep(() => this.layers[l].backward(upstream, c.layers[l] as [SublayerCache, SublayerCache], ctx)[0]);
      // A layer's cache is read by no other layer's backward (its input is the output of the layer below, which that
      // layer's backward does not read).
      tf.dispose(tensorsOf(c.layers[l]));
    }
    if (this.inputPrefix) {
      const parts = splitRows(dx, c.batch, this.offset);
      this.inputPrefix.backward(parts.prefix, c.prefix, ctx);
      dx = parts.own;
    }
    return dx;
  }
}
