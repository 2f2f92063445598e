import * as tf from '@tensorflow/tfjs-core';
import { columnSum, matMul } from '../../engine/kernels.js';
import type { KeyValuePrefix } from '../../engine/modules/attention.js';
import type { BackwardContext, ForwardContext, T2 } from '../../engine/modules/module.js';
import { trains, type Param } from '../../engine/modules/param.js';

/** What the prefix MLP shares across layers: the embedding [l, hidden] and the first dense layer (to the MLP's hidden size). */
export interface PrefixMlpShared {
  embedding: Param;
  weight: Param;
  bias: Param;
  /** The layer whose backward runs first (the encoder's last): it writes the shared gradients, the others add to them. */
  firstBackward: number;
}

interface MlpCache {
  hidden: T2;
  batch: number;
}

/**
 * Adds a gradient made here to a shared parameter's buffer as the pass asks (its weight, and whether it
 * accumulates); the first layer in backward order writes it, later ones add theirs.
 */
function addShared(p: Param, g: tf.Tensor, first: boolean, ctx: BackwardContext) {
  if (!trains(p.spec)) return;
  // On a GPU the model adds the layers' gradients of one parameter itself.
  if (ctx.device) return ctx.emit(p, g);
  const { grad, pass } = ctx.buffer(p);
  const values = g.dataSync();
  const add = pass.accumulate || !first;
  for (let j = 0; j < grad.length; j++) grad[j] = (add ? grad[j] : 0) + pass.weight * values[j];
}

/**
 * One layer's keys and values from the shared MLP (Li and Liang's reparameterisation): tanh(E W1 + b1) W2_l + b2_l,
 * [l, 2 hidden], its first half the keys and its second the values, the same for every sequence of the batch.
 * W2_l and b2_l are this layer's columns of the MLP's output layer (PEFT's one Linear(mlp_hidden, layers * 2 hidden),
 * split by layer).
 */
export function mlpKeyValues(
  shared: PrefixMlpShared,
  out: { weight: Param; bias: Param },
  layer: number,
): KeyValuePrefix<MlpCache> {
  const length = shared.embedding.spec.shape[0];
  const width = shared.embedding.spec.shape[1];
  return {
    length,
    forward(batch: number, ctx: ForwardContext) {
      const hidden = tf.tanh(
        tf.add(matMul(ctx.weight(shared.embedding) as T2, ctx.weight(shared.weight) as T2), ctx.weight(shared.bias)),
      ) as T2;
      const rows = tf.add(matMul(hidden, ctx.weight(out.weight) as T2), ctx.weight(out.bias)) as T2;
      const [keys, values] = tf.split(rows, 2, 1) as [T2, T2];
      return {
        keys: tf.tile(keys, [batch, 1]) as T2,
        values: tf.tile(values, [batch, 1]) as T2,
        cache: { hidden, batch },
      };
    },
    backward(dkeys: T2, dvalues: T2, { hidden }: MlpCache, ctx: BackwardContext) {
      const summed = (d: T2) => tf.sum(tf.reshape(d, [-1, length, width]), 0) as T2;
      const drows = tf.concat([summed(dkeys), summed(dvalues)], 1) as T2;
      if (trains(out.weight.spec)) ctx.emit(out.weight, matMul(hidden, drows, true));
      if (trains(out.bias.spec)) ctx.emit(out.bias, columnSum(drows));
      const dpre = tf.mul(matMul(drows, ctx.weight(out.weight) as T2, false, true), tf.sub(1, tf.square(hidden))) as T2;
      const first = layer === shared.firstBackward;
      tf.tidy(() => {
        addShared(shared.weight, matMul(ctx.weight(shared.embedding) as T2, dpre, true), first, ctx);
        addShared(shared.bias, columnSum(dpre), first, ctx);
        addShared(shared.embedding, matMul(dpre, ctx.weight(shared.weight) as T2, false, true), first, ctx);
      });
    },
  };
}

/** The prefixes the MLP computes (what is saved): per layer keys and values [l, hidden], from the host values. */
export function computedPrefixes(
  values: (p: Param) => Float32Array,
  shared: PrefixMlpShared,
  outs: { weight: Param; bias: Param }[],
): { keys: Float32Array; values: Float32Array }[] {
  const [length, width] = shared.embedding.spec.shape;
  const mid = shared.bias.spec.shape[0];
  const e = values(shared.embedding);
  const w1 = values(shared.weight); // [width, mid], the engine's [in, out]
  const b1 = values(shared.bias);
  const hidden = new Float64Array(length * mid);
  for (let r = 0; r < length; r++)
    for (let m = 0; m < mid; m++) {
      let s = b1[m];
      for (let i = 0; i < width; i++) s += e[r * width + i] * w1[i * mid + m];
      hidden[r * mid + m] = Math.tanh(s);
    }
  return outs.map((out) => {
    const w2 = values(out.weight); // [mid, 2 width]
    const b2 = values(out.bias);
    const keys = new Float32Array(length * width);
    const vals = new Float32Array(length * width);
    for (let r = 0; r < length; r++)
      for (let c = 0; c < 2 * width; c++) {
        let s = b2[c];
        for (let m = 0; m < mid; m++) s += hidden[r * mid + m] * w2[m * 2 * width + c];
        (c < width ? keys : vals)[r * width + (c % width)] = s;
      }
    return { keys, values: vals };
  });
}
