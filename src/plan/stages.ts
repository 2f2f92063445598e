import fs from 'node:fs';
import path from 'node:path';
import type { Dataset } from '../recipe/types.generated.js';

/** The kinds of stage a plan is made of, in the order data flows through them. */
export const STAGE_KINDS = [
  'load-model',
  'load-dataset',
  'subsample',
  'tokenize',
  'fisher',
  'train',
  'evaluate',
  'transfer-eval',
  'report',
] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

/** Stages whose output is written to the cache directory under `<kind>/<hash>/`. */
export const CACHED_STAGES: ReadonlySet<StageKind> = new Set(['fisher']);

/** The one layout of the stage cache: an entry is complete exactly when its done.json exists (it is renamed in last). */
export const cacheEntryDir = (cacheDir: string, kind: string, hash: string) => path.join(cacheDir, kind, hash);
export const isCacheEntryComplete = (cacheDir: string, kind: string, hash: string) =>
  fs.existsSync(path.join(cacheEntryDir(cacheDir, kind, hash), 'done.json'));

/** GPU memory of a stage on webgpu, and its largest single buffer (bounded by the adapter's binding size). */
export type DeviceMemoryEstimate = Omit<MemoryEstimate, 'save' | 'runtime'> & { largest_buffer: number };

export interface MemoryEstimate {
  weights: number;
  gradients: number;
  adam: number;
  fisher: number;
  mask: number;
  /** The pretrained anchor (a copy of the weights as loaded) of strategies whose update reads it. */
  anchor: number;
  activations: number;
  /** The scratch tensor saving the model writes through (the file itself is streamed). */
  save: number;
  /** The Node process and its worker threads with tfjs loaded. */
  runtime: number;
  total: number;
}

/** A stage's passes over its data; the train stage also says how it batches and evaluates. */
export interface Work {
  examples: number;
  epochs: number;
  steps: number;
  /** Batches per optimizer step (training.accumulate), when more than one. */
  accumulate?: number;
  /** training.max_steps: `steps` come from it, not from the epochs. */
  max_steps?: boolean;
  /** Evaluations during training, and how often (evaluation.every_steps; absent: after each epoch). */
  evaluations?: number;
  every_steps?: number;
  /** evaluation.early_stopping's patience: `evaluations` is then the most there can be. */
  patience?: number;
  /** Other splits evaluated beside the evaluation split. */
  splits?: string[];
}

export interface Stage {
  /** `kind:hash12`; equal ids are the same work and run once. */
  id: string;
  kind: StageKind;
  hash: string;
  deps: string[];
  /** Human summary, e.g. 'glue/rte train (1000 of 2490)'. */
  label: string;
  /** Exactly the inputs that determine the output (what is hashed). */
  inputs: Record<string, unknown>;
  /** Trials that use this stage. */
  trials: number[];
  cached: boolean | null;
  work?: Work;
  /** A load-dataset stage's data set and split as a recipe gave them: where to read (paths are not hashed, contents are). */
  source?: { dataset: Dataset; split: string };
  memory?: MemoryEstimate;
  /** On a GPU (runtime.backend: webgpu): what the device holds at the stage's peak. */
  device?: DeviceMemoryEstimate;
  /** On the CPU's native or wasm kernels: which matrix kernels this machine would run, and why. */
  kernels?: string;
  /** The train stage: parameters that train under the strategy (its modifiers' frozen ones excluded), and their share. */
  trainable?: Trainable;
}

/** `effective`: with Child-Tuning, the parameters its mask leaves updating (reserve_p of those in its scope). */
export interface Trainable {
  parameters: number;
  share: number;
  effective?: { parameters: number; share: number };
}

export interface PlannedTrial {
  index: number;
  overrides: Record<string, unknown>;
  /** The overrides that came from sweep.per_strategy (the strategy's own settings), when any did. */
  strategySettings?: string[];
  /** Hash of the trial's resolved recipe minus fields that cannot change results. */
  recipeHash: string;
  train: string;
  evaluate: string;
  fisher?: string;
  transfers: string[];
}

export interface Plan {
  planVersion: 1;
  recipeFile: string;
  stages: Stage[];
  trials: PlannedTrial[];
  report: string;
}
