import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';
import type { Param } from './param.js';
import type { GradientPass } from './types.js';

export type T2 = tf.Tensor2D;

/** What a module's forward pass reads besides its input: weights as tensors, and dropout. */
export interface ForwardContext {
  /** The device copy of a parameter ([in, out] for dense weights). */
  weight(p: Param): tf.Tensor;
  /** The host values of a parameter (embedding tables are read in JavaScript, never uploaded). Not on a GPU. */
  values(p: Param): Float32Array;
  /** The weights live on a GPU (webgpu): tables are gathered there and `values` is not available. */
  device?: boolean;
  /**
   * A fresh dropout mask (kept entries scaled by 1/(1-rate)), or null when dropout is off. Masks are drawn from one
   * stream in the order the modules ask for them, so a module's forward must ask in a fixed order.
   */
  dropout(shape: number[], kind: 'hidden' | 'attention'): tf.Tensor | null;
  /**
   * The step's random stream (null when predicting), for a module that draws per step (Mixout's weight mask). Draws
   * shift the dropout masks drawn after them, so a module must draw a fixed amount in a fixed order.
   */
  rng: Rng | null;
  /**
   * A fresh stream for a module's own per-step draws, keyed by the step's seed and `key`: the same in every thread,
   * shard and pass of a step, so a weight mask is one per step (Mixout). Null when predicting or the step has no seed.
   */
  draws(...key: number[]): Rng | null;
  /**
   * Added to each token's word embedding ([tokens * width]) in a perturbed pass (a consistency term); absent: none.
   * Without `wordGradient` the pass's word embeddings are detached: its backward leaves the word table alone.
   */
  embeddingNoise?: { values: Float32Array; wordGradient: boolean };
  /** The sequences of this pass, set by the encoder for the modules inside it. */
  sequence?: Sequence;
}

/** Rows of a pass: `batch` sequences of `length` tokens, and the additive attention bias [batch, 1, 1, length]. */
export interface Sequence {
  batch: number;
  length: number;
  /** 0 for a key a query may attend to, -1e9 for padding. */
  bias: tf.Tensor4D;
}

/** What a module's backward pass writes to: a parameter's gradient, for trainable parameters only. */
export interface BackwardContext {
  weight(p: Param): tf.Tensor;
  /** Hands a parameter's gradient (in the engine layout) to the model, which takes ownership of the tensor. */
  emit(p: Param, g: tf.Tensor): void;
  /** For gradients made in JavaScript (embedding rows): the buffer and how this pass enters it. Not on a GPU. */
  buffer(p: Param): { grad: Float32Array; pass: GradientPass };
  /** Gradients stay on a GPU: tables' gradients are emitted as tensors, and `buffer` is not available. */
  device?: boolean;
}

/**
 * A parameter whose value the model makes each pass from other parameters (ModelEditor.deriveParam): made once per
 * pass before the modules run, used wherever the modules read the parameter, and its gradient (the sum of what the
 * modules hand on for it) passed back once the pass's backward is done.
 */
export interface DerivedParam<C = unknown> {
  forward(ctx: ForwardContext): { value: tf.Tensor; cache: C };
  backward(g: tf.Tensor, cache: C, ctx: BackwardContext): void;
}

/**
 * A module with paired forward and backward passes. `forward` returns its output and what its backward reads (the
 * cache: tensors, arrays or objects of them, freed by whoever runs the pass once the backward is done). `backward`
 * emits the gradients of the module's trainable parameters and returns the input's gradient as summands, which the
 * caller adds (together with its own, such as a residual's) in one step.
 */
export interface Layer<C = unknown> {
  forward(x: T2, ctx: ForwardContext): { y: T2; cache: C };
  backward(dy: T2, cache: C, ctx: BackwardContext): T2[];
}

/** The sum of gradient parts: one add for two (as the encoder always did), addN for more. */
export function sum(parts: T2[]): T2 {
  if (parts.length === 1) return parts[0];
  if (parts.length === 2) return tf.add(parts[0], parts[1]);
  return tf.addN(parts);
}

/** x times a dropout mask, or x when there is none. */
export const applyMask = (x: T2, m: tf.Tensor | null): T2 => (m ? (tf.mul(x, m) as T2) : x);

/** Every tensor in a cache (nested objects and arrays), for freeing it once its backward has run. */
export function tensorsOf(cache: unknown, out: tf.Tensor[] = []): tf.Tensor[] {
  if (cache instanceof tf.Tensor) out.push(cache);
  else if (ArrayBuffer.isView(cache)) return out;
  else if (Array.isArray(cache)) for (const c of cache) tensorsOf(c, out);
  else if (cache && typeof cache === 'object') for (const c of Object.values(cache)) tensorsOf(c, out);
  return out;
}
