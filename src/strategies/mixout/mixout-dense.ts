import * as tf from '@tensorflow/tfjs-core';
import { denseBackward, denseForward, type Dense } from '../../engine/modules/dense.js';
import { defineModifier, type ModelEditor } from '../../engine/modules/modifier.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from '../../engine/modules/module.js';
import { internalShape, trains, type Param } from '../../engine/modules/param.js';
import type { DenseRole } from '../../engine/modules/families.js';

/** x, and the step's keep bits (0/1), its mixed weight (absent: the weight as it is, which the cache must not own). */
type MixoutCache = { x: T2; mix?: { bits: tf.Tensor; mixed: tf.Tensor } };

/** One draw per input neuron (the reference's mixout) or per weight element (what its README calls mixconnect). */
export type MixoutMask = 'per-input' | 'per-element';

/**
 * A dense layer whose weight is mixed with a frozen target each training step as bloodwass/mixout's Mixout
 * function does it: ((1 - B) u + B w - p u) / (1 - p), B ~ Bernoulli(1 - p) the keep bits, that is
 * u + B (w - u) / (1 - p). With `per-input` the bits are one per input neuron, the same for every output (the
 * reference draws the first row of the [out, in] weight and repeats it over the rows), else one per element. The
 * gradient by w is the reference's backward, B times the plain one (not divided by 1 - p). The bits are drawn from
 * the step's stream keyed by the weight, so every thread, shard and pass of a step uses the same ones; when
 * predicting (or at p = 0) the layer is the plain dense.
 */
export class MixoutDense implements Layer<MixoutCache> {
  constructor(
    readonly dense: Dense,
    readonly target: Param,
    readonly p: number,
    readonly mask: MixoutMask,
    readonly stream: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const w = ctx.weight(this.dense.weight);
    const rng = this.p > 0 ? ctx.draws(this.stream, this.dense.weight.index) : null;
    if (!rng) return { y: denseForward(x, w, ctx.weight(this.dense.bias)), cache: { x } };
    // The engine holds a dense weight as [in, out]: an input neuron is a row.
    const [inputs, outputs] = internalShape(this.dense.weight.spec);
    const shape = this.mask === 'per-input' ? [inputs, 1] : [inputs, outputs];
    const scaled = tf.tensor(rng.dropoutMask(shape[0] * shape[1], this.p), shape);
    const u = ctx.weight(this.target);
    const mixed = tf.tidy(() => tf.add(u, tf.mul(scaled, tf.sub(w, u))));
    const bits = tf.tidy(() => tf.cast(tf.greater(scaled, 0), 'float32'));
    scaled.dispose();
    return { y: denseForward(x, mixed, ctx.weight(this.dense.bias)), cache: { x, mix: { bits, mixed } } };
  }

  backward(dy: T2, { x, mix }: MixoutCache, ctx: BackwardContext): T2[] {
    const { weight, bias } = this.dense;
    const g = denseBackward(x, mix?.mixed ?? ctx.weight(weight), dy, {
      dw: trains(weight.spec),
      db: trains(bias.spec),
    });
    if (g.dw && mix) {
      ctx.emit(weight, tf.mul(g.dw, mix.bits));
      g.dw.dispose();
    } else if (g.dw) ctx.emit(weight, g.dw);
    if (g.db) ctx.emit(bias, g.db);
    return [g.dx];
  }
}

export interface MixoutOptions {
  p: number;
  mask: MixoutMask;
  /** Keep the model's dropout where mixout does not replace it; false turns every dropout off (the reference's example). */
  keepDropout: boolean;
  roles: DenseRole[];
  /** The stream (STREAMS.mixout) the masks are drawn from, below the step's seed. */
  stream: number;
}

/** The frozen target's name: the site's name plus this (never a Hugging Face tensor name). */
export const MIXOUT_TARGET = '.mixout_target';

/**
 * Wraps each dense layer of the chosen roles in MixoutDense, its target a frozen copy of the weight as loaded
 * (pretrained; a fresh head's initial values, the paper's mixout(w0) for the added output layer). Without
 * `keepDropout` every dropout of the model goes, as the reference's Hugging Face example sets each nn.Dropout to 0;
 * with it, only the dropout directly on a mixed head layer's input goes (MixLinear in place of Dropout + Linear).
 */
export const mixoutModifier = defineModifier<MixoutOptions>('mixout', (editor: ModelEditor, o) => {
  if (o.p > 0 && !o.keepDropout) editor.noDropout();
  // The encoder's dropout sits on sub-layer outputs, not on a dense layer's input: it stays as training.dropout says.
  if (o.p > 0 && o.keepDropout)
    for (const role of ['head-dense', 'head-out'] as const) if (o.roles.includes(role)) editor.noInputDropout(role);
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      if (inner !== site.dense)
        throw new Error(`mixout needs ${site.name} unwrapped (it transforms the weight itself)`);
      const weight = site.dense.weight.spec;
      if (!weight.transposed) throw new Error(`mixout expects ${weight.name} held as [in, out]`);
      const target = editor.addParam({
        name: `${site.name}${MIXOUT_TARGET}`,
        shape: weight.shape,
        transposed: weight.transposed,
        init: { copyOf: weight.name },
        group: weight.group,
        layer: site.layer,
        trainable: false,
      });
      return new MixoutDense(site.dense, target, o.p, o.mask, o.stream);
    },
  );
});
