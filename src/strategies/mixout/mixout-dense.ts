import * as tf from '@tensorflow/tfjs-core';
import { denseBackward, denseForward, type Dense } from '../../engine/modules/dense.js';
import { defineModifier, type ModelEditor } from '../../engine/modules/modifier.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from '../../engine/modules/module.js';
import { internalShape, trains, type Param } from '../../engine/modules/param.js';
import type { DenseRole } from '../../engine/modules/families.js';

/** x, and the step's scaled keep mask and mixed weight (absent: the weight as it is, which the cache must not own). */
type MixoutCache = { x: T2; mix?: { keep: tf.Tensor; mixed: tf.Tensor } };

/**
 * A dense layer whose weight is mixed with a frozen target each training step (Lee et al., 2020): each element is
 * replaced by its target value u with probability p, and the result rescaled so its expectation is w,
 * (M u + (1 - M) w - p u) / (1 - p) with M ~ Bernoulli(p). With s = (1 - M) / (1 - p), the dropout-style keep mask
 * scaled by 1 / (1 - p), that is u + s (w - u), and its gradient by w is s times the plain one. The mask is drawn
 * from the step's stream keyed by the weight, so every thread, shard and pass of a step uses the same one; when
 * predicting (or at p = 0) the layer is the plain dense.
 */
export class MixoutDense implements Layer<MixoutCache> {
  constructor(
    readonly dense: Dense,
    readonly target: Param,
    readonly p: number,
    readonly stream: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const w = ctx.weight(this.dense.weight);
    const rng = this.p > 0 ? ctx.draws(this.stream, this.dense.weight.index) : null;
    if (!rng) return { y: denseForward(x, w, ctx.weight(this.dense.bias)), cache: { x } };
    const shape = internalShape(this.dense.weight.spec);
    const keep = tf.tensor(rng.dropoutMask(shape[0] * shape[1], this.p), shape);
    const u = ctx.weight(this.target);
    const mixed = tf.tidy(() => tf.add(u, tf.mul(keep, tf.sub(w, u))));
    return { y: denseForward(x, mixed, ctx.weight(this.dense.bias)), cache: { x, mix: { keep, mixed } } };
  }

  backward(dy: T2, { x, mix }: MixoutCache, ctx: BackwardContext): T2[] {
    const { weight, bias } = this.dense;
    const g = denseBackward(x, mix?.mixed ?? ctx.weight(weight), dy, {
      dw: trains(weight.spec),
      db: trains(bias.spec),
    });
    if (g.dw && mix) {
      ctx.emit(weight, tf.mul(g.dw, mix.keep));
      g.dw.dispose();
    } else if (g.dw) ctx.emit(weight, g.dw);
    if (g.db) ctx.emit(bias, g.db);
    return [g.dx];
  }
}

export interface MixoutOptions {
  p: number;
  roles: DenseRole[];
  /** The stream (STREAMS.mixout) the masks are drawn from, below the step's seed. */
  stream: number;
}

/** The frozen target's name: the site's name plus this (never a Hugging Face tensor name). */
export const MIXOUT_TARGET = '.mixout_target';

/**
 * Wraps each dense layer of the chosen roles in MixoutDense, its target a frozen copy of the weight as loaded
 * (pretrained; a fresh head's initial values, the paper's mixout(w0) for the added output layer), and turns off
 * the dropout directly on a mixed head layer's input, which mixout replaces (MixLinear in place of Dropout + Linear).
 */
export const mixoutModifier = defineModifier<MixoutOptions>('mixout', (editor: ModelEditor, o) => {
  // Mixout replaces dropout on the layers it mixes: the head's dropout feeding one goes (the encoder's dropout
  // sits on sub-layer outputs, not on a dense layer's input, and stays as training.dropout says).
  if (o.p > 0)
    for (const role of ['head-dense', 'head-out'] as const) if (o.roles.includes(role)) editor.noInputDropout(role);
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      if (inner !== site.dense)
        throw new Error(`mixout needs ${site.name} unwrapped (it transforms the weight itself)`);
      const weight = site.dense.weight.spec;
      const target = editor.addParam({
        name: `${site.name}${MIXOUT_TARGET}`,
        shape: weight.shape,
        transposed: weight.transposed,
        init: { copyOf: weight.name },
        group: weight.group,
        layer: site.layer,
        trainable: false,
      });
      return new MixoutDense(site.dense, target, o.p, o.stream);
    },
  );
});
