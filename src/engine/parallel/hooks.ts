import type { ConsistencyTerm } from '../consistency.js';
import type { AdamWStep, OptimizerPasses } from '../optimizer.js';

/** A tensor's state a transform may read besides its gradient: its current weights and, when kept, its pretrained anchor. */
export interface TensorState {
  /** The whole tensor's weights before this step's update (read [lo, hi) only: other threads update the rest). */
  weights: Float32Array;
  /** The weights as loaded, before any update (PoolOptions.anchor); read-only, absent when the pool keeps none. */
  anchor?: Float32Array;
}

/**
 * What a training method changes in the optimizer step (and the gradient step, `consistency`), as the engine sees it: the engine knows no method,
 * only these hooks (src/strategies builds them from a recipe).
 */
export interface GradientTransform {
  /**
   * Transforms grad[lo, hi) of tensor `index` in place before the optimizer reads it at step `step`; returns how
   * many elements it kept (what a strategy that counts its masks records). `lo` is a multiple of SEGMENT_GRAIN and
   * the range at most UPDATE_BLOCK long (an update goes block by block). `bits` is the tensor's bitset shared by the
   * threads (in its arena, so `passes` may be the wasm ones), absent on a single-threaded update. `tensor`: the
   * tensor's weights and anchor (a penalty towards the pretrained weights reads them).
   */
  apply(
    index: number,
    grad: Float32Array,
    lo: number,
    hi: number,
    step: number,
    passes: OptimizerPasses,
    bits?: Uint8Array,
    tensor?: TensorState,
  ): number;
  /**
   * The same transform as the GPU runs it (webgpu): the operations on tensor `index` (of `size` elements) at step
   * `step`, in order; empty when it leaves the tensor as it is. Absent: the transform has no GPU form, and a GPU
   * run of the strategy is refused.
   */
  device?(index: number, size: number, step: number): DeviceOp[];
}

/** One operation of a gradient transform on the GPU (webgpu/optimizer.ts runs them, fused into the update). */
export type DeviceOp =
  /** Child-Tuning-F's keep bits, drawn into the tensor's bitset chunk by chunk from these streams (as fmask). */
  | { kind: 'draw'; seeds: number[]; chunk: number; threshold: number }
  /** g *= bit * scale from the tensor's bitset (drawn this step, fixed, or replayed from the host), kept bits counted. */
  | { kind: 'mask'; scale: number }
  /** g += lambda (w - anchor): an L2 penalty towards the pretrained weights. */
  | { kind: 'pull'; lambda: number };

/**
 * A change to AdamW itself for one tensor at one step: the Adam step is multiplied by `scale`, then the stepped
 * weights move towards the anchor, p += pull * (p - anchor) (pull <= 0), before the decoupled weight decay. Needs
 * the anchor (PoolOptions.anchor).
 */
export interface StepChange {
  scale: number;
  pull: number;
}

/** Per tensor and step, the change to its AdamW step; undefined: plain AdamW. */
export type StepRule = (index: number, step: number, adam: AdamWStep) => StepChange | undefined;

export interface UpdateHooks {
  /** Who supplied the hooks (a strategy kind), named in errors. */
  kind: string;
  /** Per tensor: whether it trains; a frozen tensor's moments and weights stay as they are. Absent: all train. */
  trains?: readonly boolean[];
  transform?: GradientTransform;
  /** Elements of tensor `index` whose weight decay applies (decayed after an undecayed step); undefined: all. */
  decayMask?(index: number): Uint8Array | undefined;
  /** Fixed per-tensor bitsets, copied once into the tensors' shared bitsets so the transform's passes read them there. */
  fixedBits?: readonly (Uint8Array | undefined)[];
  /** Changes AdamW's step per tensor (an annealed task weight and a pull towards the anchor); absent: plain AdamW. */
  stepRule?: StepRule;
  /**
   * A tensor stepped by an optimizer of its own (diff pruning's gate parameters: AdamW at a constant learning rate,
   * no weight decay), given the run's step; undefined: the run's AdamW step. The step rule then changes this one.
   */
  ownStep?(index: number, step: number, adam: AdamWStep): AdamWStep | undefined;
  /**
   * A consistency term each training step adds (a second pass with noised embeddings, model.ts); its noise is drawn
   * from the stream (stepSeed, `stream`, shard, pass). Steps without a step seed (the Fisher pass) run without it.
   */
  consistency?: ConsistencyTerm & { stream: number };
}

/** Builds a shard's hooks from the plain data a worker thread receives (structured-cloned). */
export type HooksFrom = (prepared: unknown) => UpdateHooks;

/** The main thread's part of an update: reads or writes the shared per-tensor bitsets around the round. */
export interface UpdateObserver {
  /** Whether `after` reads the bitsets (a GPU copies them back to the host only then). */
  readonly readsBits?: boolean;
  before?(step: number, bits: Uint8Array[]): void;
  /** `kept`: per tensor, the elements its transform kept this step (each thread counts the bits it wrote or applied). */
  after?(step: number, bits: Uint8Array[], sizes: readonly number[], kept: readonly number[]): void;
}
