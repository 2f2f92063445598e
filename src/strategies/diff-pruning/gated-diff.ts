import * as tf from '@tensorflow/tfjs-core';
import { gatedGradients, gatedValue, hardConcreteGates } from '../../engine/kernels.js';
import type { BackwardContext, ForwardContext } from '../../engine/modules/module.js';
import { sizeOf, trains, type Param } from '../../engine/modules/param.js';
import type { Rng } from '../../engine/rng.js';
import { gateConstants } from './hard-concrete.js';

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

/** The gates of one log_alpha tensor: training takes one 32-bit draw per element from `rng`, in element order. */
function gates(logAlpha: Param, rng: Rng | null, lambda: number, ctx: ForwardContext): Gates {
  const draws = rng && rng.u32s(sizeOf(logAlpha.spec));
  return hardConcreteGates(ctx.weight(logAlpha), draws, gateConstants(lambda));
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
    const value = gatedValue(ctx.weight(this.base), ctx.weight(this.p.delta), element.z, tensor.z);
    return { value, cache: { element, tensor } };
  }

  /** Emits the gradients of the difference and both gates from g, the gradient by the tensor the forward made. */
  backward(g: tf.Tensor, { element, tensor }: GatedCache, ctx: BackwardContext) {
    const { delta, logAlpha, tensorLogAlpha } = this.p;
    const grads = gatedGradients({ g, delta: ctx.weight(delta), ...element, scale: tensor.z });
    if (trains(delta.spec)) ctx.emit(delta, grads.delta);
    else grads.delta.dispose();
    if (trains(logAlpha.spec)) ctx.emit(logAlpha, grads.logAlpha);
    else grads.logAlpha.dispose();
    if (trains(tensorLogAlpha.spec))
      ctx.emit(
        tensorLogAlpha,
        tf.tidy(() => tf.add(tf.mul(grads.sum, tensor.dz), tensor.penalty)),
      );
    grads.sum.dispose();
  }
}

/** Names of a gated tensor's added parameters: its name plus these (never a Hugging Face tensor name). */
export const DELTA = '.diff_pruning.delta';
export const LOG_ALPHA = '.diff_pruning.log_alpha';
export const TENSOR_LOG_ALPHA = '.diff_pruning.tensor_log_alpha';
