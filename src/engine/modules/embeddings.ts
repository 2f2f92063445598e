import * as tf from '@tensorflow/tfjs-core';
import { embeddingSum } from '../kernels.js';
import { rowGradient } from '../webgpu/rows.js';
import type { LayerNorm, LayerNormCache } from './layer-norm.js';
import { applyMask, sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';
import { emits, type Param } from './param.js';
import type { Batch } from './types.js';

/** How position ids are counted: from 0 (BERT, ELECTRA), or from padding_idx + 1 over real tokens only (RoBERTa). */
export type Positions = 'absolute' | 'after-padding';

export interface EmbeddingsCache {
  norm: LayerNormCache;
  mask: tf.Tensor | null;
  projection?: unknown;
}

/**
 * Word, position and token-type embeddings, summed, normalised and dropped out, then projected up when the
 * embedding size differs from the hidden size (ELECTRA). The rows are gathered and their gradient scattered in
 * JavaScript (the gather kernel is slow on wasm and its gradient missing); the tables are never uploaded.
 */
export class Embeddings {
  /** The rows each token reads per table, cached per batch (forward and backward share them). */
  private lastRows: { batch: Batch; rows: [Param, Int32Array][] } | undefined;

  constructor(
    readonly tables: { word: Param; position: Param; type: Param },
    readonly norm: LayerNorm,
    public projection: Layer | undefined,
    readonly options: { width: number; positions: Positions; padTokenId: number; typeVocabSize: number },
  ) {}

  forward(b: Batch, ctx: ForwardContext): { y: T2; cache: EmbeddingsCache } {
    const E = this.options.width;
    const tokens = b.batch * b.seq;
    const emb = ctx.device ? this.gathered(b, ctx) : this.summed(b, ctx);
    const n = this.norm.forward(emb, ctx);
    const mask = ctx.dropout([tokens, E], 'hidden');
    const x = applyMask(n.y, mask);
    if (!this.projection) return { y: x, cache: { norm: n.cache, mask } };
    const p = this.projection.forward(x, ctx);
    return { y: p.y, cache: { norm: n.cache, mask, projection: p.cache } };
  }

  /** The embedding sum in JavaScript, from the host tables. */
  private summed(b: Batch, ctx: ForwardContext): T2 {
    const E = this.options.width;
    const tokens = b.batch * b.seq;
    const out = embeddingSum(
      this.rowsOf(b).map(([p, rows]) => ({ values: ctx.values(p), rows })),
      E,
      tokens,
    );
    // Noise on the sum is noise on the word embeddings (the other tables add to it), and leaves the backward as is.
    if (ctx.embeddingNoise) for (let i = 0; i < out.length; i++) out[i] += ctx.embeddingNoise[i];
    return tf.tensor2d(out, [tokens, E]);
  }

  /** The embedding sum on the GPU, from the tables there, added in the same order as in JavaScript. */
  private gathered(b: Batch, ctx: ForwardContext): T2 {
    const rows = this.rowsOf(b).map(([p, ids]) => tf.gather(ctx.weight(p), tf.tensor1d(ids, 'int32')));
    let out = rows.reduce((a, r) => tf.add(a, r));
    if (ctx.embeddingNoise) out = tf.add(out, tf.tensor2d(ctx.embeddingNoise, out.shape as [number, number]));
    return out as T2;
  }

  /** Scatter-adds the gradient at the embedding sum into the trainable tables. */
  backward(b: Batch, dy: T2, c: EmbeddingsCache, ctx: BackwardContext) {
    const dx = this.projection ? sum(this.projection.backward(dy, c.projection, ctx)) : dy;
    const [demb] = this.norm.backward(applyMask(dx, c.mask), c.norm, ctx);
    const trained = this.rowsOf(b).filter(([p]) => emits(p.spec));
    if (!trained.length) return;
    if (ctx.device) {
      for (const [p, ids] of trained) ctx.emit(p, rowGradient(demb, ids, p.spec.shape[0]));
      return;
    }
    const E = this.options.width;
    const d = demb.dataSync() as Float32Array;
    for (const [p, rows] of trained) {
      const { grad: g, pass } = ctx.buffer(p);
      if (!pass.accumulate) g.fill(0);
      if (pass.weight === 1) {
        for (let t = 0; t < rows.length; t++) {
          const src = t * E;
          const dst = rows[t] * E;
          for (let j = 0; j < E; j++) g[dst + j] += d[src + j];
        }
      } else {
        for (let t = 0; t < rows.length; t++) {
          const src = t * E;
          const dst = rows[t] * E;
          for (let j = 0; j < E; j++) g[dst + j] += pass.weight * d[src + j];
        }
      }
    }
  }

  private rowsOf(b: Batch): [Param, Int32Array][] {
    if (this.lastRows?.batch !== b) {
      this.lastRows = {
        batch: b,
        rows: [
          [this.tables.word, b.inputIds],
          [this.tables.position, this.positionIds(b)],
          [this.tables.type, this.typeIds(b)],
        ],
      };
    }
    return this.lastRows.rows;
  }

  /** Models with one token type (RoBERTa) read every segment as type 0. */
  private typeIds(b: Batch): Int32Array {
    return this.options.typeVocabSize > 1 ? b.tokenTypeIds : new Int32Array(b.tokenTypeIds.length);
  }

  private positionIds(b: Batch): Int32Array {
    const out = new Int32Array(b.batch * b.seq);
    const afterPadding = this.options.positions === 'after-padding';
    const pad = this.options.padTokenId;
    for (let i = 0; i < b.batch; i++) {
      let count = 0;
      for (let t = 0; t < b.seq; t++) {
        const k = i * b.seq + t;
        if (!afterPadding) out[k] = t;
        else out[k] = b.attentionMask[k] > 0 ? pad + ++count : pad;
      }
    }
    return out;
  }
}
