/** The bench's shapes and what every part of it shares: medians, a shape's model, FLOPs and batches, runMode. */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { batchOf } from '../src/engine/batch.js';
import { initialValue, initStrategyParams } from '../src/engine/checkpoint.js';
import { parseModelConfig } from '../src/engine/config.js';
import { EncoderClassifier } from '../src/engine/model.js';
import type { ModelModifier } from '../src/engine/modules/modifier.js';
import { Rng } from '../src/engine/rng.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The bench's entry (dist/bench/bench.js): every child process and peak worker runs it, in the mode it is given. */
export const ENTRY = path.join(ROOT, 'dist', 'bench', 'bench.js');

/**
 * The shapes, and how each is measured. `full`: strategies interleaved over `steps` rounds, fisher against an
 * epoch, a one-thread run, then PyTorch. `paired`: `rounds` times our process then PyTorch's, each a warm-up
 * step and `steps` measured steps, so drift of the machine hits both (BERT-base and -large steps take seconds
 * to a minute; together they fit in about 15 minutes).
 */
export const SHAPES = {
  'bert-tiny': { layers: 2, hidden: 128, heads: 2, mode: 'full', rounds: 1, steps: 301, strategies: true },
  'bert-mini': { layers: 4, hidden: 256, heads: 4, mode: 'full', rounds: 1, steps: 61, strategies: true },
  'bert-small': { layers: 4, hidden: 512, heads: 8, mode: 'full', rounds: 1, steps: 21, strategies: true },
  'bert-base': { layers: 12, hidden: 768, heads: 12, mode: 'paired', rounds: 2, steps: 4, strategies: true },
  'bert-large': { layers: 24, hidden: 1024, heads: 16, mode: 'paired', rounds: 2, steps: 2, strategies: false },
} as const;
export const SEQ = 128;
export const BATCH = 16;
export const VOCAB = 30522;

export type Shape = keyof typeof SHAPES;

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * A 95% bootstrap interval of the median of `xs` (2000 resamples from a fixed seed, so a rerun on the same numbers
 * prints the same interval): how far a median over this many noisy rounds can be trusted.
 */
export function medianInterval(xs: number[]): [number, number] {
  const rng = new Rng(12345);
  const medians = Array.from({ length: 2000 }, () => median(xs.map(() => xs[rng.int(xs.length)])));
  medians.sort((a, b) => a - b);
  return [medians[Math.floor(0.025 * medians.length)], medians[Math.floor(0.975 * medians.length)]];
}

/** Training FLOPs of one step: forward (2 per multiply-add) plus backward (twice the forward). */
export function stepFlops(s: (typeof SHAPES)[Shape]) {
  const h = s.hidden;
  const perToken = s.layers * (2 * (4 * h * h + 2 * h * 4 * h) + 4 * SEQ * h);
  return 3 * perToken * BATCH * SEQ;
}

export function modelFor(shape: Shape, modifiers: readonly ModelModifier[] = []) {
  const s = SHAPES[shape];
  const config = parseModelConfig(
    {
      model_type: 'bert',
      vocab_size: VOCAB,
      hidden_size: s.hidden,
      num_hidden_layers: s.layers,
      num_attention_heads: s.heads,
      intermediate_size: 4 * s.hidden,
      max_position_embeddings: 512,
      type_vocab_size: 2,
    },
    '<bench>',
    'bert',
  );
  const model = new EncoderClassifier(config, 2, undefined, modifiers);
  const rng = new Rng(0);
  // The model's own parameters at random, as if loaded; a strategy's from the seed as the loader draws them.
  model.specs.forEach((spec, i) => {
    if (spec.source !== 'strategy') model.values[i] = initialValue(spec, rng);
  });
  initStrategyParams(model, 0);
  return model;
}

export function randomBatch(rng: Rng) {
  const encs = Array.from({ length: BATCH }, () => ({
    inputIds: Array.from({ length: SEQ }, () => rng.int(VOCAB)),
    tokenTypeIds: new Array(SEQ).fill(0),
  }));
  return batchOf(
    encs,
    SEQ,
    Array.from({ length: BATCH }, () => rng.int(2)),
  );
}

/** A row of results.json for one shape. */
export type Row = Record<string, any>;

/**
 * Runs the entry in `mode` (with `job` as its JSON argument) in a process of its own, and returns the JSON line it
 * printed last; its stderr goes to this process's, and a failure throws naming `what`.
 */
export function runMode<T = Row>(mode: string, what: string, job?: object): T {
  const out = spawnSync(process.execPath, [ENTRY, mode, ...(job ? [JSON.stringify(job)] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 26,
  });
  if (out.status !== 0) throw new Error(`bench: ${what} failed (exit ${out.status})`);
  return JSON.parse(out.stdout.trim().split('\n').at(-1)!);
}
