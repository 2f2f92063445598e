import { parameterCounts, type ModelConfig } from './config.js';

/**
 * How much of a tfjs backend's heap a step needs, and how many rows of a batch one pass may take so that it fits:
 * the wasm backend's heap is a 32-bit WebAssembly memory (4 GiB at most, and it never shrinks), and BERT-large
 * at 8 rows per thread needs more than that. The plan's memory estimate (src/plan/estimate.ts) uses the same model.
 */

const F32 = 4;
/** The backward of the top layer holds 1.65 layers' worth more than the cached activations (tfjs peak tensor bytes, BERT-tiny and -mini). */
const TRANSIENT_LAYERS = 1.65;
/** The wasm heap runs about 1.2 times the live tensor bytes (allocator headroom, measured). */
export const HEAP_HEADROOM = 1.2;
/** What a pass may use of the wasm heap's 4 GiB: the rest is tfjs's own and fragmentation. */
const WASM_HEAP_BUDGET = 3.6 * 2 ** 30;

/**
 * Heap bytes for the activations of a forward and backward pass over `rows` sequences of `seq` tokens: each layer
 * keeps 12 [tokens, hidden], 3 [tokens, intermediate] and 4 [rows, heads, seq, seq] tensors for the backward pass.
 */
export function activationBytes(config: ModelConfig, rows: number, seq: number): number {
  const tokens = rows * seq;
  const perLayer =
    tokens * (12 * config.hiddenSize + 3 * config.intermediateSize) + 4 * rows * config.numHeads * seq * seq;
  return Math.round(HEAP_HEADROOM * (config.numLayers + TRANSIENT_LAYERS) * perLayer * F32);
}

/**
 * Heap bytes of a forward pass alone (evaluation, probes) over `rows` sequences of `seq` tokens: without dropout
 * masks and the backward pass's needs, about 6 [tokens, hidden], 2 [tokens, intermediate] and 2 [rows, heads, seq,
 * seq] tensors a layer (fitted to tfjs's peak tensor bytes at BERT-tiny, -mini and -small: within 8%; the dense
 * layers add their bias in place, so no layer holds a product and its biased copy at once).
 */
export function forwardBytes(config: ModelConfig, rows: number, seq: number): number {
  const tokens = rows * seq;
  const perLayer =
    tokens * (6 * config.hiddenSize + 2 * config.intermediateSize) + 2 * rows * config.numHeads * seq * seq;
  return Math.round(HEAP_HEADROOM * (config.numLayers + TRANSIENT_LAYERS) * perLayer * F32);
}

/** Heap bytes of a replica's device copies of the weights (embedding tables stay in JavaScript). */
export function deviceWeightBytes(config: ModelConfig, numLabels: number): number {
  const p = parameterCounts(config, numLabels);
  return (p.total - p.embeddings) * F32;
}

/**
 * The most rows one forward and backward pass takes on the wasm backend; larger shards run in several passes
 * whose gradients are summed. Depends only on the model and the sequence length, so results do not depend on
 * the machine. At least 1.
 */
export function rowsPerPass(config: ModelConfig, numLabels: number, seq: number): number {
  const free = WASM_HEAP_BUDGET - deviceWeightBytes(config, numLabels);
  return Math.max(1, Math.floor(free / activationBytes(config, 1, seq)));
}

/** Rows of the largest pass a shard of `shardRows` runs in (the passes split it evenly, as DataParallel does). */
export function passRows(config: ModelConfig, numLabels: number, seq: number, shardRows: number): number {
  return Math.ceil(shardRows / Math.ceil(shardRows / rowsPerPass(config, numLabels, seq)));
}
