import type { ModifierData } from '../modules/modifier.js';
import type { BackendName } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { Batch } from '../model.js';
import type { AdamWStep } from '../optimizer.js';
import type { Segment } from './partition.js';
import type { SharedState } from './state.js';

/** The messages of the pool: plain data, the same for the main thread's shard and the workers. */
export type Request =
  /** `stepSeed`: the seed of the modules' own per-step draws and of a consistency term's noise (null: none). */
  /**
   * Gradient accumulation: `share` scales the batch's gradient and loss (its part of the shard's rows over the whole
   * optimizer step; default 1) and `accumulate` adds them to the shard's gradient instead of replacing it.
   */
  | {
      kind: 'grad';
      batch: Batch;
      dropoutSeed: number | null;
      stepSeed?: number | null;
      share?: number;
      accumulate?: boolean;
    }
  | { kind: 'reduce'; weights: number[] }
  | { kind: 'update'; step: number; coef: number; adam: AdamWStep }
  /** New hooks, rebuilt by each shard from `prepared` with the pool's HooksFrom. */
  | { kind: 'hooks'; prepared: unknown }
  | { kind: 'reload' }
  | { kind: 'predict'; batch: Batch }
  | { kind: 'features'; batch: Batch };

export interface Reply {
  loss?: number;
  sumsq?: number;
  out?: Float32Array;
  /** update: per tensor, how many elements its transform kept over this thread's segments. */
  kept?: number[];
}

/** What a worker thread starts from (its workerData). */
export interface WorkerInit {
  config: ModelConfig;
  numLabels: number;
  backend: BackendName;
  /** PoolOptions.kernel. */
  kernel?: string;
  shard: number;
  state: SharedState;
  segments: Segment[];
  decays: boolean[];
  /** The model's modifiers as plain data (modifierData): the worker rebuilds the same model with `modifiersFrom`. */
  modifiers: ModifierData[];
}
