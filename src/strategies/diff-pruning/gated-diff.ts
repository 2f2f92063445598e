import * as tf from '@tensorflow/tfjs-core';
import type { BackwardContext, ForwardContext } from '../../engine/modules/module.js';
import { internalShape, trains, type Param } from '../../engine/modules/param.js';
import type { Rng } from '../../engine/rng.js';
import { addExpectedL0Gradient, hardConcrete, hardConcreteOnDevice } from './hard-concrete.js';

/** A gated difference's parameters: the difference, its gates' log_alpha per element, and one for the whole tensor. */
export interface GateParams {
  delta: Param;
  logAlpha: Param;
  tensorLogAlpha: Param;
}

/** A set of gates for this pass: z, dz/dlog_alpha, and the L0 penalty's gradient by log_alpha (zeros when predicting). */
type Gates = { z: tf.Tensor; dz: tf.Tensor; penalty: tf.Tensor };

export interface GatedCache {
  element: Gates;
  tensor: Gates;
}

function gates(logAlpha: Param, rng: Rng | null, lambda: number, ctx: ForwardContext): Gates {
  if (ctx.device) return hardConcreteOnDevice(ctx.weight(logAlpha), rng, lambda);
  const values = ctx.values(logAlpha);
  const shape = internalShape(logAlpha.spec);
  const { z, dz } = hardConcrete(values, rng);
  const penalty = new Float32Array(values.length);
  if (rng) addExpectedL0Gradient(values, penalty, lambda);
  return { z: tf.tensor(z, shape), dz: tf.tensor(dz, shape), penalty: tf.tensor(penalty, shape) };
}

/**
 * One tensor of the model fine-tuned as diff pruning's reference does it (dguo98/DiffPruning
 * run_glue_diffpruning.py): the frozen pretrained value plus z_t z delta, z a hard-concrete gate per element and
 * z_t one for the whole tensor (the reference's per_params_alpha, on by default), drawn each training step from
 * the step's stream keyed by the difference (elements in order, then the tensor's). With g the gradient by the
 * tensor the model used: delta gets g z_t z, log_alpha g delta z_t dz/dlog_alpha, the tensor's log_alpha the sum of
 * g delta z times its dz_t/dlog_alpha; each log_alpha also gets lambda times its L0 term's gradient (added in every
 * pass, weighted as the pass is, so it enters the batch gradient once).
 */
export class GatedDiff {
  constructor(
    readonly base: Param,
    readonly p: GateParams,
    readonly lambda: number,
    readonly stream: number,
  ) {}

  forward(ctx: ForwardContext): { value: tf.Tensor; cache: GatedCache } {
    const rng = ctx.draws(this.stream, this.p.delta.index);
    const element = gates(this.p.logAlpha, rng, this.lambda, ctx);
    const tensor = gates(this.p.tensorLogAlpha, rng, this.lambda, ctx);
    const value = tf.tidy(() =>
      tf.add(ctx.weight(this.base), tf.mul(tf.mul(tensor.z, element.z), ctx.weight(this.p.delta))),
    );
    return { value, cache: { element, tensor } };
  }

  /** Emits the gradients of the difference and both gates from g, the gradient by the tensor the forward made. */
  backward(g: tf.Tensor, { element, tensor }: GatedCache, ctx: BackwardContext) {
    const { delta, logAlpha, tensorLogAlpha } = this.p;
    if (trains(delta.spec))
      ctx.emit(
        delta,
        tf.tidy(() => tf.mul(g, tf.mul(tensor.z, element.z))),
      );
    if (trains(logAlpha.spec))
      ctx.emit(
        logAlpha,
        tf.tidy(() => tf.add(tf.mul(tf.mul(g, ctx.weight(delta)), tf.mul(tensor.z, element.dz)), element.penalty)),
      );
    if (trains(tensorLogAlpha.spec))
      ctx.emit(
        tensorLogAlpha,
        tf.tidy(() =>
          tf.add(
            tf.mul(tf.reshape(tf.sum(tf.mul(tf.mul(g, ctx.weight(delta)), element.z)), [1]), tensor.dz),
            tensor.penalty,
          ),
        ),
      );
  }
}

/** Names of a gated tensor's added parameters: its name plus these (never a Hugging Face tensor name). */
export const DELTA = '.diff_pruning.delta';
export const LOG_ALPHA = '.diff_pruning.log_alpha';
export const TENSOR_LOG_ALPHA = '.diff_pruning.tensor_log_alpha';
