import * as tf from '@tensorflow/tfjs-core';
import type { KeyValuePrefix } from './attention.js';
import type { InputPrefix } from './embeddings.js';
import type { BackwardContext, ForwardContext, T2 } from './module.js';
import { trains, type Param } from './param.js';

/** A [length, width] parameter's rows, the same for every sequence of a batch: [batch * length, width]. */
export const tiledRows = (p: Param, batch: number, ctx: ForwardContext) => tf.tile(ctx.weight(p), [batch, 1]) as T2;

/** The gradient of tiled rows: [batch * length, width] summed over the batch, emitted when the parameter trains. */
export function emitSummedRows(d: T2, p: Param, ctx: BackwardContext) {
  if (trains(p.spec)) ctx.emit(p, tf.sum(tf.reshape(d, [-1, ...p.spec.shape]), 0));
}

/** Key and value rows that are parameters themselves ([length, hidden] each): prefix tuning's prefixes. */
export const learnedKeyValues = (keys: Param, values: Param): KeyValuePrefix<null> => ({
  length: keys.spec.shape[0],
  forward: (batch, ctx) => ({ keys: tiledRows(keys, batch, ctx), values: tiledRows(values, batch, ctx), cache: null }),
  backward: (dkeys, dvalues, _cache, ctx) => {
    emitSummedRows(dkeys, keys, ctx);
    emitSummedRows(dvalues, values, ctx);
  },
});

/** Input rows that are a parameter ([length, hidden]): prompt tuning's soft prompt. */
export const learnedInputRows = (rows: Param): InputPrefix<null> => ({
  length: rows.spec.shape[0],
  forward: (batch, ctx) => ({ rows: tiledRows(rows, batch, ctx), cache: null }),
  backward: (drows, _cache, ctx) => emitSummedRows(drows, rows, ctx),
});
