import * as tf from '@tensorflow/tfjs-core';
import { denseBackward, denseForward, type Dense } from '../../engine/modules/dense.js';
import type { DenseRole } from '../../engine/modules/families.js';
import { defineModifier } from '../../engine/modules/modifier.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from '../../engine/modules/module.js';
import { trains, type Param } from '../../engine/modules/param.js';
import { freezeAllButClassifier } from '../frozen-base.js';

/** x, the binary mask, and the masked weight the forward used. */
type MaskedCache = { x: T2; mask: tf.Tensor; w: tf.Tensor };

/**
 * A dense layer whose frozen weight is masked by binarised learned scores (mask tuning, Zhao et al., 2020, as
 * ptlmasking/maskbert's MaskedLinear1): w * 1[s > threshold]. The binarisation's gradient is taken straight
 * through: the scores get the gradient of the mask as if it were real-valued, the plain weight gradient times w.
 */
export class MaskedDense implements Layer<MaskedCache> {
  constructor(
    readonly dense: Dense,
    readonly scores: Param,
    readonly threshold: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const w = ctx.weight(this.dense.weight);
    const mask = tf.tidy(() => tf.cast(tf.greater(ctx.weight(this.scores), this.threshold), 'float32'));
    const masked = tf.mul(w, mask);
    return { y: denseForward(x, masked, ctx.weight(this.dense.bias)), cache: { x, mask, w: masked } };
  }

  backward(dy: T2, c: MaskedCache, ctx: BackwardContext): T2[] {
    const { weight, bias } = this.dense;
    const want = trains(weight.spec) || trains(this.scores.spec);
    const g = denseBackward(c.x, c.w, dy, { dw: want, db: trains(bias.spec) });
    if (g.dw) {
      const dw = g.dw;
      if (trains(this.scores.spec)) ctx.emit(this.scores, tf.mul(dw, ctx.weight(weight)));
      if (trains(weight.spec)) ctx.emit(weight, tf.mul(dw, c.mask));
      dw.dispose();
    }
    if (g.db) ctx.emit(bias, g.db);
    return [g.dx];
  }
}

export interface MaskOptions {
  roles: DenseRole[];
  threshold: number;
  initialSparsity: number;
  /** The scores' uniform initialisation starts at -initScale. */
  initScale: number;
}

/**
 * The reference's uniform initialisation of the scores (maskers.py, get_init_scales for MaskedLinear1): over
 * [-initScale, high], high placed so a share initialSparsity of the interval lies at or below the threshold.
 */
export function scoreInterval(threshold: number, initialSparsity: number, initScale: number) {
  return { low: -initScale, high: (initScale + threshold) / initialSparsity - initScale };
}

/** The scores' name: the site's name plus this (never a Hugging Face tensor name). */
export const SCORES = '.mask_tuning.scores';

/**
 * Freezes every parameter of the model (the classifier's output layer too when it is masked, as the reference's
 * mask_classifier; else it trains as usual) and gives each dense layer of the chosen roles scores, uniform over
 * scoreInterval, so a share initialSparsity of each mask starts at zero. Biases are neither masked nor trained.
 */
export const maskTuningModifier = defineModifier<MaskOptions>('mask-tuning', (editor, o) => {
  if (o.roles.includes('head-out')) editor.setTrainable(() => false);
  else freezeAllButClassifier(editor);
  const { low, high } = scoreInterval(o.threshold, o.initialSparsity, o.initScale);
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      if (inner !== site.dense)
        throw new Error(`mask tuning needs ${site.name} unwrapped (it masks the weight itself)`);
      const weight = site.dense.weight.spec;
      const scores = editor.addParam({
        name: `${site.name}${SCORES}`,
        shape: weight.shape,
        transposed: weight.transposed,
        group: weight.group,
        layer: site.layer,
        init: { uniform: (high - low) / 2, mean: (high + low) / 2 },
      });
      return new MaskedDense(site.dense, scores, o.threshold);
    },
  );
});
