import type { ConsistencyTerm } from '../consistency.js';
import type { OptimizerPasses } from '../optimizer.js';

/**
 * What a training method changes in the optimizer step (and the gradient step, `consistency`), as the engine sees it: the engine knows no method,
 * only these hooks (src/strategies builds them from a recipe).
 */
export interface GradientTransform {
  /**
   * Transforms grad[lo, hi) of tensor `index` in place before the optimizer reads it at step `step`; returns how
   * many elements it kept. `lo` is a multiple of SEGMENT_GRAIN. `bits` is the tensor's bitset shared by the
   * threads (in its arena, so `passes` may be the wasm ones), absent on a single-threaded update.
   */
  apply(
    index: number,
    grad: Float32Array,
    lo: number,
    hi: number,
    step: number,
    passes: OptimizerPasses,
    bits?: Uint8Array,
  ): number;
}

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
  before?(step: number, bits: Uint8Array[]): void;
  after?(step: number, bits: Uint8Array[], sizes: readonly number[]): void;
}
