import type { Batch } from './modules/types.js';
import type { UpdateObserver } from './parallel/hooks.js';

/** One batch of an accumulated optimizer step, with the seeds `gradients` takes. */
export interface MicroBatch {
  batch: Batch;
  dropoutSeed: number | null;
  stepSeed: number | null;
}

/**
 * What runs a model's steps, as the training loop, the fisher pass and evaluation see it: the CPU's worker threads
 * (parallel/pool.ts) or one GPU (webgpu/pool.ts). The same model, modules and strategy hooks run on either.
 */
export interface TrainingPool {
  /** Shards a batch is split into (1 on a GPU). */
  readonly threads: number;
  /** Forward and backward over a batch: the batch-mean gradient stays in the pool; returns the loss and gradient norm. */
  gradients(b: Batch, dropoutSeed: number | null, stepSeed?: number | null): Promise<{ loss: number; norm: number }>;
  /**
   * Gradient accumulation: forward and backward over consecutive batches, each with its own seeds, their gradients
   * summed with every row weighted alike, so the pool holds the mean gradient over all their rows (one batch of them,
   * up to float rounding). Returns that mean loss and the gradient norm. One batch is exactly `gradients`.
   */
  accumulate(micro: readonly MicroBatch[]): Promise<{ loss: number; norm: number }>;
  /** Gradients of several batches at once, one per shard (at most `threads`), kept apart. Returns the losses. */
  gradientsEach(batches: Batch[], dropoutSeed: number | null): Promise<number[]>;
  /**
   * Adds the squared gradient of shard k's last pass to a per-tensor sum (the Fisher information): each tensor
   * where `scoped`, first scaled down to L2 norm `clip` when clip > 0 and its norm is above it, divided by `count`
   * (the number of passes the sum averages).
   */
  addSquares(k: number, scoped: readonly boolean[], clip: number, count: number): void;
  /** The sums addSquares built (an empty array outside the scope), read to the host; the sums are then dropped. */
  takeSquares(): Promise<Float32Array[]>;
  /** Every shard rebuilds its hooks from `prepared` (plain data). */
  setHooks(prepared: unknown): Promise<void>;
  /** One optimizer step on the last `gradients`: clip by `coef`, the hooks' transform, AdamW. */
  update(lr: number, coef: number, observer?: UpdateObserver): Promise<void>;
  /** Re-reads the model's host values (after they were set outside an update: a resume, the best epoch). */
  reload(): Promise<void>;
  /** Brings the weights and Adam's moments to the host (model.values, `moments`); a no-op where they live there. */
  syncToHost(): Promise<void>;
  /** Adam's moments and step count, as of the last syncToHost where they live on a GPU. */
  readonly moments: { m: Float32Array[]; v: Float32Array[]; step: number };
  restoreMoments(m: Float32Array[], v: Float32Array[], step: number): void;
  /** Logits ('predict') or first-token features over a batch, in row order. */
  infer(kind: 'predict' | 'features', b: Batch): Promise<Float32Array>;
  close(): Promise<void>;
}
