import os from 'node:os';
import { parameterCounts, type ModelConfig } from '../engine/config.js';
import { activationBytes, rowsPerPass } from '../engine/memory.js';
import type { Recipe } from '../recipe/types.generated.js';
import { definitionOf } from '../strategies/registry.js';
import type { MemoryEstimate } from './stages.js';

const F32 = 4;

/** Resident size of a Node process running the engine on a micro model, and what each extra worker thread adds (measured, tfjs 4.22). */
const RUNTIME_MAIN = 87 << 20;
const RUNTIME_WORKER = 32 << 20;

/**
 * Bytes a run holds at its peak, modelled on how the engine allocates: weights once in shared memory plus a
 * device copy per thread (embedding tables excepted: they are read in JavaScript), a gradient buffer per
 * thread, two Adam moments, the Fisher accumulator (fisher stage) or the bitset mask, the activations of each
 * thread's largest pass (src/engine/memory.ts: a shard runs in several passes when one would not fit the wasm
 * heap), and the runtime itself.
 */
export function estimateMemory(config: ModelConfig, recipe: Recipe, numLabels: number, stage: 'train' | 'fisher', threads = recipe.runtime?.threads || os.availableParallelism()): MemoryEstimate {
  const p = parameterCounts(config, numLabels);
  const weights = (p.total + threads * (p.total - p.embeddings)) * F32;
  const gradients = threads * p.total * F32;
  const adam = stage === 'train' ? 2 * p.total * F32 : 0;
  const { fisher, mask } = definitionOf(recipe.strategy.kind).memory?.(recipe.strategy, p, stage) ?? { fisher: 0, mask: 0 };
  const batch = stage === 'fisher' ? (recipe.strategy.fisher?.batch_size ?? 16) : recipe.training.batch_size;
  const t = recipe.model.max_seq_length;
  const shards = Math.min(threads, batch);
  const shardRows = Math.ceil(batch / shards);
  const rows = Math.ceil(shardRows / Math.ceil(shardRows / rowsPerPass(config, numLabels, t)));
  const activations = shards * activationBytes(config, rows, t);
  const runtime = RUNTIME_MAIN + (threads - 1) * RUNTIME_WORKER;
  return { weights, gradients, adam, fisher, mask, activations, runtime, total: weights + gradients + adam + fisher + mask + activations + runtime };
}

export const formatBytes = (n: number) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
