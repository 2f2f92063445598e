import { parameterCounts, type ModelConfig } from '../engine/config.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { MemoryEstimate } from './stages.js';

const F32 = 4;

/**
 * Bytes a training step holds at its peak: weights, gradients, two Adam moments, the Fisher accumulator
 * (during the fisher stage) or its bitset mask, and the activations kept for the backward pass.
 */
export function estimateMemory(config: ModelConfig, recipe: Recipe, numLabels: number, stage: 'train' | 'fisher'): MemoryEstimate {
  const p = parameterCounts(config, numLabels);
  const weights = p.total * F32;
  const gradients = p.total * F32;
  const adam = stage === 'train' ? 2 * p.total * F32 : 0;
  const inScope = recipe.strategy.fisher?.scope === 'all' ? p.total : p.encoder;
  const fisher = stage === 'fisher' ? inScope * F32 : 0;
  const mask = recipe.strategy.kind === 'child-tuning-d' ? Math.ceil(inScope / 8) : 0;
  const batch = stage === 'fisher' ? (recipe.strategy.fisher?.batch_size ?? 16) : recipe.training.batch_size;
  const t = recipe.model.max_seq_length;
  const h = config.hiddenSize;
  const perLayer = batch * t * (9 * h + 3 * config.intermediateSize) + 3 * batch * config.numHeads * t * t;
  const activations = (config.numLayers * perLayer + batch * t * 4 * h) * F32;
  return { weights, gradients, adam, fisher, mask, activations, total: weights + gradients + adam + fisher + mask + activations };
}

export const formatBytes = (n: number) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
