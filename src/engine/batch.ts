import type { Batch } from './model.js';
import type { Encoding } from './tokenizer.js';

/** Pads encodings to `seq` (dynamic padding: the longest in the batch) and packs them into typed arrays. */
export function batchOf(
  encodings: readonly (Pick<Encoding, 'inputIds' | 'tokenTypeIds'> & { attentionMask?: number[] })[],
  seq: number,
  labels?: ArrayLike<number>,
  padId = 0,
): Batch {
  const n = encodings.length;
  const b: Batch = {
    batch: n,
    seq,
    inputIds: new Int32Array(n * seq).fill(padId),
    tokenTypeIds: new Int32Array(n * seq),
    attentionMask: new Float32Array(n * seq),
    labels: new Float32Array(n),
  };
  encodings.forEach((e, i) => {
    const len = Math.min(seq, e.inputIds.length);
    for (let t = 0; t < len; t++) {
      b.inputIds[i * seq + t] = e.inputIds[t];
      b.tokenTypeIds[i * seq + t] = e.tokenTypeIds[t];
      b.attentionMask[i * seq + t] = e.attentionMask ? e.attentionMask[t] : 1;
    }
    if (labels) b.labels[i] = labels[i];
  });
  return b;
}

/** Rows [lo, hi) of a batch, padded to the same length. */
export function sliceBatch(b: Batch, lo: number, hi: number): Batch {
  const s = b.seq;
  return {
    batch: hi - lo,
    seq: s,
    inputIds: b.inputIds.slice(lo * s, hi * s),
    tokenTypeIds: b.tokenTypeIds.slice(lo * s, hi * s),
    attentionMask: b.attentionMask.slice(lo * s, hi * s),
    labels: b.labels.slice(lo, hi),
  };
}
