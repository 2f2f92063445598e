import * as tf from '@tensorflow/tfjs-core';
import { tidyKeep } from '../kernels.js';
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

export interface EncoderCache {
  layers: unknown[];
}

/**
 * The layer stack. Each layer's forward runs in its own tidy that keeps only what its backward reads, and each
 * layer's cache is freed as soon as its backward is done, so the heap's peak is the weights plus one pass's cached
 * activations rather than every intermediate of the step.
 */
export class Encoder {
  constructor(readonly layers: EncoderLayer[]) {}

  /** x: [B*T, H] embeddings; mask: the attention mask of those rows [B*T]. Returns [B*T, H]. */
  forward(x: T2, mask: Float32Array, batch: number, ctx: ForwardContext): { y: T2; cache: EncoderCache } {
    const admitted = tf.tensor1d(mask);
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
    return { y: x, cache: { layers } };
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
    return dx;
  }
}
