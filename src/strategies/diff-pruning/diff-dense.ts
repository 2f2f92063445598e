import * as tf from '@tensorflow/tfjs-core';
import { denseBackward, denseForward, type Dense } from '../../engine/modules/dense.js';
import type { DenseRole } from '../../engine/modules/families.js';
import { defineModifier } from '../../engine/modules/modifier.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from '../../engine/modules/module.js';
import { internalShape, trains, type Param } from '../../engine/modules/param.js';
import { freezeAllButClassifier } from '../frozen-base.js';
import { addExpectedL0Gradient, hardConcrete, hardConcreteOnDevice } from './hard-concrete.js';

interface DiffCache {
  x: T2;
  /** The weight the forward used, w + z * delta, and the gates. */
  w: tf.Tensor;
  z: tf.Tensor;
  /** dz/dlog_alpha, and the L0 penalty's gradient by log_alpha (zeros when predicting). */
  dz: tf.Tensor;
  penalty: tf.Tensor;
}

/**
 * A dense layer fine-tuned as its frozen pretrained weight plus a gated difference (diff pruning, Guo et al.,
 * 2021): w + z * delta, z a hard-concrete gate per element (hard-concrete.ts) with parameters log_alpha. Training
 * draws the gates' noise from the step's stream keyed by the weight (the same in every thread); the gradient by
 * delta is z times the plain one, by log_alpha the plain one times delta dz/dlog_alpha plus lambda times the
 * expected L0 norm's gradient (added in each pass, weighted as the pass is, so it enters the batch gradient once).
 */
export class DiffDense implements Layer<DiffCache> {
  constructor(
    readonly dense: Dense,
    readonly delta: Param,
    readonly logAlpha: Param,
    readonly lambda: number,
    readonly stream: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const rng = ctx.draws(this.stream, this.delta.index);
    if (ctx.device) {
      const { z, dz, penalty } = hardConcreteOnDevice(ctx.weight(this.logAlpha), rng, this.lambda);
      const w = tf.tidy(() => tf.add(ctx.weight(this.dense.weight), tf.mul(z, ctx.weight(this.delta))));
      return { y: denseForward(x, w, ctx.weight(this.dense.bias)), cache: { x, w, z, dz, penalty } };
    }
    const logAlpha = ctx.values(this.logAlpha);
    const gates = hardConcrete(logAlpha, rng);
    const shape = internalShape(this.delta.spec);
    const penalty = new Float32Array(logAlpha.length);
    if (rng) addExpectedL0Gradient(logAlpha, penalty, this.lambda);
    const z = tf.tensor(gates.z, shape);
    const w = tf.tidy(() => tf.add(ctx.weight(this.dense.weight), tf.mul(z, ctx.weight(this.delta))));
    const cache = { x, w, z, dz: tf.tensor(gates.dz, shape), penalty: tf.tensor(penalty, shape) };
    return { y: denseForward(x, w, ctx.weight(this.dense.bias)), cache };
  }

  backward(dy: T2, c: DiffCache, ctx: BackwardContext): T2[] {
    const { weight, bias } = this.dense;
    const want = [weight, this.delta, this.logAlpha].some((p) => trains(p.spec));
    const g = denseBackward(c.x, c.w, dy, { dw: want, db: trains(bias.spec) });
    if (g.dw) {
      const dw = g.dw;
      if (trains(this.delta.spec)) ctx.emit(this.delta, tf.mul(dw, c.z));
      if (trains(this.logAlpha.spec))
        ctx.emit(
          this.logAlpha,
          tf.tidy(() => tf.add(tf.mul(tf.mul(dw, ctx.weight(this.delta)), c.dz), c.penalty)),
        );
      if (trains(weight.spec)) ctx.emit(weight, dw);
      else dw.dispose();
    }
    if (g.db) ctx.emit(bias, g.db);
    return [g.dx];
  }
}

export interface DiffOptions {
  roles: DenseRole[];
  lambda: number;
  alphaInit: number;
  /** The stream (STREAMS.gateNoise) the gates' noise is drawn from, below the step's seed. */
  stream: number;
}

/** Names of the added tensors: the site's name plus these (never a Hugging Face tensor name). */
export const DELTA = '.diff_pruning.delta';
export const LOG_ALPHA = '.diff_pruning.log_alpha';

/**
 * Freezes every parameter of the model but the classifier's output layer (trained as usual), and gives each dense
 * layer of the chosen roles a difference (zeros, so training starts at the pretrained model) and gate parameters
 * (log_alpha = alphaInit: gates open).
 */
export const diffPruningModifier = defineModifier<DiffOptions>('diff-pruning', (editor, o) => {
  freezeAllButClassifier(editor);
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      if (inner !== site.dense)
        throw new Error(`diff pruning needs ${site.name} unwrapped (it transforms the weight itself)`);
      const weight = site.dense.weight.spec;
      const shaped = { shape: weight.shape, transposed: weight.transposed, group: weight.group, layer: site.layer };
      const delta = editor.addParam({ name: `${site.name}${DELTA}`, init: 'zeros', ...shaped });
      const logAlpha = editor.addParam({
        name: `${site.name}${LOG_ALPHA}`,
        init: { constant: o.alphaInit },
        ...shaped,
      });
      return new DiffDense(site.dense, delta, logAlpha, o.lambda, o.stream);
    },
  );
});
