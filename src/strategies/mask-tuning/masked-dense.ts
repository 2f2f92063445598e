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
 * A dense layer whose frozen weight is masked by binarised learned scores (mask tuning, Zhao et al., 2020):
 * w * 1[s >= threshold]. The binarisation's gradient is taken straight through: the scores get the gradient of the
 * mask as if it were real-valued, the plain weight gradient times w.
 */
export class MaskedDense implements Layer<MaskedCache> {
  constructor(
    readonly dense: Dense,
    readonly scores: Param,
    readonly threshold: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const w = ctx.weight(this.dense.weight);
    const mask = tf.tidy(() => tf.cast(tf.greaterEqual(ctx.weight(this.scores), this.threshold), 'float32'));
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
  /** Half-width of the scores' uniform initialisation. */
  spread: number;
}

/** The scores' name: the site's name plus this (never a Hugging Face tensor name). */
export const SCORES = '.mask_tuning.scores';

/**
 * Freezes every parameter but the classifier's output layer and gives each dense layer of the chosen roles scores,
 * uniform over [threshold - 2 q spread, threshold + 2 (1 - q) spread] (width 2 spread, q = the initial sparsity),
 * so a share q of each mask starts at zero.
 */
export const maskTuningModifier = defineModifier<MaskOptions>('mask-tuning', (editor, o) => {
  freezeAllButClassifier(editor);
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
        init: { uniform: o.spread, mean: o.threshold + o.spread * (1 - 2 * o.initialSparsity) },
      });
      return new MaskedDense(site.dense, scores, o.threshold);
    },
  );
});
