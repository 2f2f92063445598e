import * as tf from '@tensorflow/tfjs-core';
import { ChildtuneError } from '../errors.js';
import { addIndexedRows, embeddingSum, readNow } from '../kernels.js';
import { rowGradient } from '../webgpu/rows.js';
import type { LayerNorm, LayerNormCache } from './layer-norm.js';
import { applyMask, sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';
import { emits, type Param } from './param.js';
import { prependRows, splitRows } from './rows.js';
import type { Batch } from './types.js';

/** How position ids are counted: from 0 (BERT, ELECTRA), or from padding_idx + 1 over real tokens only (RoBERTa). */
export type Positions = 'absolute' | 'after-padding';

/**
 * Rows put before every sequence's word embeddings (prompt tuning, as PEFT places them: the prompt is part of
 * inputs_embeds, so position and token-type embeddings, the LayerNorm and dropout apply to it, and the head reads
 * its first row). `forward` gives [batch * length, width] rows in the word-embedding space; `backward` takes their
 * gradient.
 */
export interface InputPrefix<C = unknown> {
  readonly length: number;
  forward(batch: number, ctx: ForwardContext): { rows: T2; cache: C };
  backward(drows: T2, cache: C, ctx: BackwardContext): void;
}

export interface EmbeddingsCache {
  norm: LayerNormCache;
  mask: tf.Tensor | null;
  projection?: unknown;
  prompt?: unknown;
  /** The pass's word embeddings were detached (a perturbed pass without wordGradient): no gradient to the table. */
  detachedWords?: boolean;
}

/** A table, the row each token of the pass reads, and whether only the sequences' own tokens read it (words). */
type TableRows = { table: Param; ids: Int32Array; own: boolean };

/**
 * Word, position and token-type embeddings, summed, normalised and dropped out, then projected up when the
 * embedding size differs from the hidden size (ELECTRA). With a prompt, its rows stand before each sequence's word
 * embeddings and the pass is prompt.length tokens longer. The rows are gathered and their gradient scattered in
 * JavaScript (the gather kernel is slow on wasm and its gradient missing); the tables are never uploaded.
 */
export class Embeddings {
  /** The rows each token reads per table, cached per batch (forward and backward share them). */
  private lastRows: { batch: Batch; rows: TableRows[] } | undefined;
  prompt?: InputPrefix;
  /**
   * Positions the sequences' own tokens count after: transformers' past_key_values_length, set by a key/value
   * prefix passed as past key values (prefix tuning, as PEFT runs it). BERT and ELECTRA take position ids from
   * there (their table sliced at [offset, offset + length)); RoBERTa counts its real tokens from padding_idx + 1 +
   * offset, padding at padding_idx. A prompt's inputs_embeds: BERT shifts them too, RoBERTa does not
   * (create_position_ids_from_inputs_embeds has no offset).
   */
  positionOffset = 0;

  constructor(
    readonly tables: { word: Param; position: Param; type: Param },
    readonly norm: LayerNorm,
    public projection: Layer | undefined,
    readonly options: { width: number; positions: Positions; padTokenId: number; typeVocabSize: number },
  ) {}

  /** Tokens each sequence has in the pass before its own (the prompt's). */
  get promptLength() {
    return this.prompt?.length ?? 0;
  }

  forward(b: Batch, ctx: ForwardContext): { y: T2; cache: EmbeddingsCache } {
    const E = this.options.width;
    const tokens = b.batch * (this.promptLength + b.seq);
    const prompt = this.prompt?.forward(b.batch, ctx);
    const emb = ctx.device ? this.gathered(b, ctx, prompt?.rows) : this.summed(b, ctx, prompt?.rows);
    const n = this.norm.forward(emb, ctx);
    const mask = ctx.dropout([tokens, E], 'hidden');
    const x = applyMask(n.y, mask);
    const detachedWords = ctx.embeddingNoise !== undefined && !ctx.embeddingNoise.wordGradient;
    const cache: EmbeddingsCache = { norm: n.cache, mask, prompt: prompt?.cache, detachedWords };
    if (!this.projection) return { y: x, cache };
    const p = this.projection.forward(x, ctx);
    return { y: p.y, cache: { ...cache, projection: p.cache } };
  }

  /** The embedding sum in JavaScript, from the host tables. */
  private summed(b: Batch, ctx: ForwardContext, prompt?: T2): T2 {
    const E = this.options.width;
    const own = b.batch * b.seq;
    const rows = this.rowsOf(b);
    const tables = (keep: (r: TableRows) => boolean, tokens: number) =>
      embeddingSum(
        rows.filter(keep).map((r) => ({ values: ctx.values(r.table), rows: r.ids })),
        E,
        tokens,
      );
    // Noise on the sum is noise on the word embeddings (the other tables add to it), and leaves the backward as is.
    const noised = (out: Float32Array) => {
      const noise = ctx.embeddingNoise?.values;
      if (noise) for (let i = 0; i < own * E; i++) out[i] += noise[i];
      return out;
    };
    if (!prompt) return tf.tensor2d(noised(tables(() => true, own)), [own, E]);
    const words = tf.tensor2d(noised(tables((r) => r.own, own)), [own, E]);
    const tokens = b.batch * (this.promptLength + b.seq);
    const rest = tf.tensor2d(
      tables((r) => !r.own, tokens),
      [tokens, E],
    );
    return tf.add(prependRows(prompt, words, b.batch), rest) as T2;
  }

  /** The embedding sum on the GPU, from the tables there, added in the same order as in JavaScript. */
  private gathered(b: Batch, ctx: ForwardContext, prompt?: T2): T2 {
    const [words, position, type] = this.rowsOf(b).map((r) =>
      tf.gather(ctx.weight(r.table), tf.tensor1d(r.ids, 'int32')),
    );
    const noise = (t: tf.Tensor) =>
      ctx.embeddingNoise ? tf.add(t, tf.tensor2d(ctx.embeddingNoise.values, t.shape as [number, number])) : t;
    if (!prompt) return noise(tf.add(tf.add(words, position), type)) as T2;
    return tf.add(prependRows(prompt, noise(words) as T2, b.batch), tf.add(position, type)) as T2;
  }

  /**
   * Scatter-adds the gradient at the embedding sum into the trainable tables (not into the word table after a pass
   * whose word embeddings were detached), and gives the prompt its rows'.
   */
  backward(b: Batch, dy: T2, c: EmbeddingsCache, ctx: BackwardContext) {
    const dx = this.projection ? sum(this.projection.backward(dy, c.projection, ctx)) : dy;
    const [demb] = this.norm.backward(applyMask(dx, c.mask), c.norm, ctx);
    let dwords = demb;
    if (this.prompt) {
      const parts = splitRows(demb, b.batch, this.promptLength);
      this.prompt.backward(parts.prefix, c.prompt, ctx);
      dwords = parts.own;
    }
    const detached = (r: TableRows) => c.detachedWords === true && r.table === this.tables.word;
    for (const r of this.rowsOf(b).filter((r) => emits(r.table.spec) && !detached(r)))
      scatterRows(r.table, r.ids, r.own ? dwords : demb, ctx);
  }

  private rowsOf(b: Batch): TableRows[] {
    if (this.lastRows?.batch !== b) {
      const P = this.promptLength;
      this.lastRows = {
        batch: b,
        rows: [
          { table: this.tables.word, ids: b.inputIds, own: true },
          { table: this.tables.position, ids: this.positionIds(b, P), own: false },
          { table: this.tables.type, ids: this.typeIds(b, P), own: false },
        ],
      };
    }
    return this.lastRows.rows;
  }

  /** Models with one token type (RoBERTa) read every segment as type 0; a prompt's rows are type 0 (PEFT's zeros). */
  private typeIds(b: Batch, prompt: number): Int32Array {
    const S = prompt + b.seq;
    const out = new Int32Array(b.batch * S);
    if (this.options.typeVocabSize > 1)
      for (let i = 0; i < b.batch; i++) out.set(b.tokenTypeIds.subarray(i * b.seq, (i + 1) * b.seq), i * S + prompt);
    return out;
  }

  /**
   * Each token's position row. With a prompt the pass is inputs_embeds as transformers sees it: BERT counts every
   * row from 0, prompt first; RoBERTa (create_position_ids_from_inputs_embeds) counts every row from padding_idx + 1,
   * padding included, as it cannot see which rows pad.
   */
  private positionIds(b: Batch, prompt: number): Int32Array {
    const S = prompt + b.seq;
    const afterPadding = this.options.positions === 'after-padding';
    const pad = this.options.padTokenId;
    const offset = this.positionOffset;
    const rows = this.tables.position.spec.shape[0];
    const needed = this.positionsNeeded(b.seq);
    if ((prompt || offset) && needed > rows) {
      const before = prompt ? `a prompt of ${prompt} tokens` : `a prefix of ${offset} positions`;
      throw new ChildtuneError(
        'input',
        `${before} before sequences of ${b.seq} tokens needs ${needed} position rows; the model has ${rows}`,
        {
          hint: `Lower model.max_seq_length by ${needed - rows} or more, or the ${prompt ? 'prompt' : 'prefix'}'s length.`,
        },
      );
    }
    const out = new Int32Array(b.batch * S);
    for (let i = 0; i < b.batch; i++) {
      let count = 0;
      for (let t = 0; t < S; t++) {
        const k = i * S + t;
        if (!afterPadding) out[k] = offset + t;
        else if (prompt) out[k] = pad + 1 + t;
        else out[k] = b.attentionMask[k] > 0 ? pad + offset + ++count : pad;
      }
    }
    return out;
  }

  /** The position rows a pass over sequences of `seq` tokens reads (its largest position id plus one). */
  positionsNeeded(seq: number): number {
    const S = this.promptLength + seq;
    if (this.options.positions !== 'after-padding') return this.positionOffset + S;
    return this.options.padTokenId + 1 + S + (this.promptLength ? 0 : this.positionOffset);
  }
}

/** The attention mask of a pass with a prompt: every prompt row admitted (PEFT's ones), then the batch's own. */
export function promptedMask(b: Batch, prompt: number): Float32Array {
  if (!prompt) return b.attentionMask;
  const S = prompt + b.seq;
  const out = new Float32Array(b.batch * S);
  for (let i = 0; i < b.batch; i++) {
    out.fill(1, i * S, i * S + prompt);
    out.set(b.attentionMask.subarray(i * b.seq, (i + 1) * b.seq), i * S + prompt);
  }
  return out;
}

/** Adds a table's rows' gradient (d: one row per token, `ids` the row each read) into its gradient. */
function scatterRows(p: Param, ids: Int32Array, d: T2, ctx: BackwardContext) {
  if (ctx.device) {
    ctx.emit(p, rowGradient(d, ids, p.spec.shape[0]));
    return;
  }
  const { grad: g, pass } = ctx.buffer(p);
  if (!pass.accumulate) g.fill(0);
  // d read in place (on wasm a heap view, valid until a tensor is made or freed: none is before the add).
  addIndexedRows(g, ids, readNow(d), null, ids.length, d.shape[1], pass.weight);
}
