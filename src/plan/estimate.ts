import os from 'node:os';
import { parameterCounts, type ModelConfig } from '../engine/config.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { MemoryEstimate } from './stages.js';

const F32 = 4;

/** Resident size of a Node process running the engine on a micro model, and what each extra worker thread adds (measured, tfjs 4.22). */
const RUNTIME_MAIN = 87 << 20;
const RUNTIME_WORKER = 32 << 20;
const TRANSIENT_LAYERS = 1.65;
const HEAP_HEADROOM = 1.2;

/**
 * Bytes a run holds at its peak, modelled on how the engine allocates: weights once in shared memory plus a
 * device copy per thread (embedding tables excepted: they are read in JavaScript), a gradient buffer per
 * thread, two Adam moments, the Fisher accumulator (fisher stage) or the bitset mask, the activations, and
 * the runtime itself. Activations: each layer keeps 12 [tokens, hidden], 3 [tokens, intermediate] and 4
 * [batch, heads, seq, seq] tensors for the backward pass, and the backward of the top layer needs 1.65
 * layers' worth more (both counted from tfjs's peak tensor bytes for BERT-tiny and BERT-mini at batch 8
 * and 16, within 4%); the wasm heap holding them runs about 1.2 times that (allocator headroom, measured).
 */
export function estimateMemory(config: ModelConfig, recipe: Recipe, numLabels: number, stage: 'train' | 'fisher', threads = recipe.runtime?.threads || os.availableParallelism()): MemoryEstimate {
  const p = parameterCounts(config, numLabels);
  const weights = (p.total + threads * (p.total - p.embeddings)) * F32;
  const gradients = threads * p.total * F32;
  const adam = stage === 'train' ? 2 * p.total * F32 : 0;
  const inScope = recipe.strategy.fisher?.scope === 'all' ? p.total : p.encoder;
  const fisher = stage === 'fisher' ? inScope * F32 : 0;
  const mask = recipe.strategy.kind === 'child-tuning-d' ? Math.ceil(inScope / 8) : 0;
  const batch = stage === 'fisher' ? (recipe.strategy.fisher?.batch_size ?? 16) : recipe.training.batch_size;
  const t = recipe.model.max_seq_length;
  const tokens = batch * t;
  const perLayer = tokens * (12 * config.hiddenSize + 3 * config.intermediateSize) + 4 * batch * config.numHeads * t * t;
  const activations = Math.round(HEAP_HEADROOM * (config.numLayers + TRANSIENT_LAYERS) * perLayer * F32);
  const runtime = RUNTIME_MAIN + (threads - 1) * RUNTIME_WORKER;
  return { weights, gradients, adam, fisher, mask, activations, runtime, total: weights + gradients + adam + fisher + mask + activations + runtime };
}

export const formatBytes = (n: number) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
