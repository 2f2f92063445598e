import os from 'node:os';
import type { ModelConfig } from '../engine/config.js';
import { activationBytes, forwardBytes, passRows } from '../engine/memory.js';
import { paramSpecs, sizeOf, trains, type ParamSpec } from '../engine/params.js';
import { saveScratchElements } from '../engine/save.js';
import type { Recipe } from '../recipe/types.generated.js';
import { effectiveTrainable } from '../strategies/effective.js';
import { anchorFor, definitionOf, modifiersFor } from '../strategies/registry.js';
import type { DeviceMemoryEstimate, MemoryEstimate, Trainable } from './stages.js';

const F32 = 4;

/** Resident size of a Node process running the engine on a micro model, and what each extra worker thread adds (measured, tfjs 4.22). */
const RUNTIME_MAIN = 87 << 20;
const RUNTIME_WORKER = 32 << 20;

/**
 * Bytes a run holds at its peak, modelled on how the engine allocates: weights once in shared memory plus a
 * device copy per thread (embedding tables excepted: they are read in JavaScript), a gradient buffer per
 * thread, two Adam moments, what the strategy adds (its memory hook: D's Fisher scores or mask), the activations of
 * each thread's largest pass (src/engine/memory.ts: a shard runs in several passes when one would not fit the wasm
 * heap), the one scratch tensor saving the model needs (src/engine/save.ts streams the file), and the runtime
 * itself. The train stage's largest pass may be an evaluation's (evaluation.batch_size rows, forward only): a wasm
 * heap keeps its high-water mark. The parsed checkpoint is not counted: it is freed
 * once the weights are copied, before any of this is allocated.
 */
export function estimateMemory(
  config: ModelConfig,
  recipe: Recipe,
  numLabels: number,
  stage: 'train' | 'fisher',
  threads = recipe.runtime?.threads || os.availableParallelism(),
): MemoryEstimate {
  const specs = paramSpecs(config, numLabels, modifiersFor(recipe.strategy));
  const p = countsOf(specs);
  const weights = (p.total + threads * (p.total - p.embeddings)) * F32;
  const gradients = threads * p.total * F32;
  const adam = stage === 'train' ? 2 * p.total * F32 : 0;
  const {
    fisher,
    mask,
    activationPasses = 1,
  } = definitionOf(recipe.strategy.kind).memory?.(recipe.strategy, p, stage) ?? { fisher: 0, mask: 0 };
  const t = recipe.model.max_seq_length;
  const passes = (batch: number, bytes: typeof activationBytes) => {
    const shards = Math.min(threads, batch);
    return shards * bytes(config, passRows(config, numLabels, t, Math.ceil(batch / shards)), t);
  };
  const batch = stage === 'fisher' ? (recipe.strategy.fisher?.batch_size ?? 16) : recipe.training.batch_size;
  // A recipe built without an evaluation block (the bench's) evaluates nothing.
  const evalBatch = stage === 'train' ? recipe.evaluation?.batch_size : undefined;
  const training = passes(batch, activationBytes) * (stage === 'train' ? activationPasses : 1);
  const activations = Math.max(training, evalBatch ? passes(evalBatch, forwardBytes) : 0);
  const save = stage === 'train' ? saveScratchElements(specs) * F32 : 0;
  // The pretrained anchor: one shared copy of every parameter as loaded, for strategies whose update reads it.
  const anchor = stage === 'train' && anchorFor(recipe.strategy) ? p.total * F32 : 0;
  const runtime = RUNTIME_MAIN + (threads - 1) * RUNTIME_WORKER;
  return {
    weights,
    gradients,
    adam,
    fisher,
    mask,
    anchor,
    activations,
    save,
    runtime,
    total: weights + gradients + adam + fisher + mask + anchor + activations + save + runtime,
  };
}

/**
 * GPU bytes a stage holds at its peak on webgpu (the device pool, src/engine/webgpu/pool.ts): every weight once, a
 * gradient per trainable tensor (the embedding tables' dense), Adam's two moments and a keep bitset per trainable
 * tensor in training, D's Fisher sums in its stage, the pretrained anchor where the strategy reads it, and the
 * activations of the whole batch in one pass (the CPU path's per-layer model, src/engine/memory.ts). Modelled, not
 * measured on a GPU yet. `largest_buffer`: the largest tensor, parameter or activation, which must fit one storage
 * binding of the adapter.
 */
export function estimateDeviceMemory(
  config: ModelConfig,
  recipe: Recipe,
  numLabels: number,
  stage: 'train' | 'fisher',
): DeviceMemoryEstimate {
  const specs = paramSpecs(config, numLabels, modifiersFor(recipe.strategy));
  const p = countsOf(specs);
  const trained = specs.reduce((a, s) => a + (trains(s) ? sizeOf(s) : 0), 0);
  const weights = p.total * F32;
  const gradients = trained * F32;
  const adam = stage === 'train' ? 2 * trained * F32 : 0;
  const mask = stage === 'train' ? Math.ceil(trained / 8) : 0;
  const fisher = stage === 'fisher' ? (recipe.strategy.fisher?.scope === 'all' ? p.total : p.encoder) * F32 : 0;
  const anchor = stage === 'train' && anchorFor(recipe.strategy) ? trained * F32 : 0;
  const t = recipe.model.max_seq_length;
  const batch = stage === 'fisher' ? (recipe.strategy.fisher?.batch_size ?? 16) : recipe.training.batch_size;
  const passes =
    stage === 'train'
      ? (definitionOf(recipe.strategy.kind).memory?.(recipe.strategy, p, stage)?.activationPasses ?? 1)
      : 1;
  const activations = passes * activationBytes(config, batch, t);
  const biggestParam = Math.max(...specs.map(sizeOf)) * F32;
  const tokens = batch * t;
  const biggestActivation =
    Math.max(tokens * config.intermediateSize, batch * config.numHeads * t * t, tokens * config.hiddenSize) * F32;
  return {
    weights,
    gradients,
    adam,
    fisher,
    mask,
    anchor,
    activations,
    total: weights + gradients + adam + fisher + mask + anchor + activations,
    largest_buffer: Math.max(biggestParam, biggestActivation),
  };
}

/** Parameter counts by group, the modifiers' own included (in the group they declare, the encoder by default). */
function countsOf(specs: readonly ParamSpec[]) {
  const sum = (keep: (s: ParamSpec) => boolean) => specs.reduce((a, s) => a + (keep(s) ? sizeOf(s) : 0), 0);
  return {
    total: sum(() => true),
    embeddings: sum((s) => s.group === 'embeddings'),
    encoder: sum((s) => s.group === 'encoder'),
  };
}

/**
 * Parameters that train under a strategy's modifiers (frozen ones excluded), and their share of all; where
 * Child-Tuning masks them, also the effective count (reserve_p of those in its scope: strategies/effective.ts).
 */
export function trainableOf(specs: readonly ParamSpec[], strategy: Recipe['strategy']): Trainable {
  const total = specs.reduce((a, s) => a + sizeOf(s), 0);
  const parameters = specs.reduce((a, s) => a + (trains(s) ? sizeOf(s) : 0), 0);
  const effective = effectiveTrainable(strategy, specs);
  return {
    parameters,
    share: parameters / total,
    ...(effective !== undefined && { effective: { parameters: effective, share: effective / total } }),
  };
}

export const formatBytes = (n: number) =>
  n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(2)} GiB`
    : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : `${(n / 1024).toFixed(1)} KiB`;
