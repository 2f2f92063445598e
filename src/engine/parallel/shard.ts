import * as tf from '@tensorflow/tfjs-core';
import { sliceBatch } from '../batch.js';
import { rowsPerPass } from '../memory.js';
import type { Batch, EncoderClassifier } from '../model.js';
import { trains } from '../modules/param.js';
import { decayWhere, jsPasses, type AdamWStep, type OptimizerPasses } from '../optimizer.js';
import { OptimizerKernels } from '../optimizer-wasm.js';
import { Rng, streamSeed } from '../rng.js';
import type { HooksFrom, UpdateHooks } from './hooks.js';
import { UPDATE_BLOCK, type Segment } from './partition.js';
import type { Reply, Request } from './protocol.js';
import type { SharedState } from './state.js';

/** Hooks that change nothing: every tensor trains on its gradient as it is. */
export const PLAIN_HOOKS: UpdateHooks = { kind: 'plain' };

export function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The batch-mean gradient over [lo, hi) of one tensor into shard 0's buffer, as the weights say; returns
 * `sumsq` plus its squares (for global-norm clipping).
 */
export function reduceSegment(
  grads: Float32Array[][],
  { index, lo, hi }: Segment,
  w: readonly number[],
  sumsq: number,
  passes: OptimizerPasses = jsPasses,
): number {
  const g = grads[0][index];
  if (w.length === 1 && w[0] === 1) return passes.sumsq(g, lo, hi, sumsq);
  // The common case in one pass: weighted sum, stored as float32, squared.
  if (w.length === 2) return passes.reduce2(g, grads[1][index], lo, hi, w[0], w[1], sumsq);
  passes.scale(g, lo, hi, w[0]);
  for (let k = 1; k < w.length; k++) passes.axpy(g, grads[k][index], lo, hi, w[k]);
  return passes.sumsq(g, lo, hi, sumsq);
}

/**
 * One optimizer step over grad[lo, hi) of one tensor (the reduced gradient): clip by `coef`, the hooks'
 * gradient transform (with the tensor's shared bitset, weights and anchor when given), then AdamW as the hooks'
 * step rule changes it, with weight decay only where the parameter decays and the hooks' decay mask allows. A
 * frozen tensor is left as it is. Returns how many elements the transform kept.
 */
export function updateSegment(
  s: Pick<SharedState, 'values' | 'm' | 'v' | 'anchor'> & { grads: Float32Array[][]; bits?: Uint8Array[] },
  { index, lo, hi }: Segment,
  hooks: UpdateHooks,
  step: number,
  coef: number,
  runStep: AdamWStep,
  decays: boolean,
  passes: OptimizerPasses = jsPasses,
): number {
  if (hooks.trains && !hooks.trains[index]) return 0;
  const adam = hooks.ownStep?.(index, step, runStep) ?? runStep;
  const [p, g, m, v] = [s.values[index], s.grads[0][index], s.m[index], s.v[index]];
  const anchor = s.anchor?.[index];
  const tensor = { weights: p, anchor };
  // A masked decay, or a pull towards the anchor, reads the stepped weight, so it follows an undecayed step.
  const mask = decays ? hooks.decayMask?.(index) : undefined;
  const change = hooks.stepRule?.(index, step, adam);
  if (change && !anchor)
    throw new Error(`tensor ${index}'s update pulls towards the pretrained anchor, but none is kept`);
  const stepped = change ? { ...adam, stepSize: adam.stepSize * change.scale } : adam;
  const adamStep = { ...stepped, decay: decays && !mask && !change ? adam.decay : 0 };
  let kept = 0;
  // Every pass is per element, so block by block gives the segment's result, with each block still in cache
  // from one pass to the next; blocks start on the grain, as transforms expect.
  for (let start = lo; start < hi; start += UPDATE_BLOCK) {
    const end = Math.min(hi, start + UPDATE_BLOCK);
    if (coef < 1) passes.scale(g, start, end, coef);
    kept += hooks.transform
      ? hooks.transform.apply(index, g, start, end, step, passes, s.bits?.[index], tensor)
      : end - start;
    passes.adamw(p, g, m, v, start, end, adamStep);
    if (change) {
      if (change.pull !== 0) passes.pull(p, p, anchor!, start, end, change.pull);
      if (decays && !mask) passes.decay(p, start, end, adam.decay);
    }
    if (mask) decayWhere(p, start, end, mask, adam.decay);
  }
  return kept;
}

/** What one thread does with each request; the same code runs on the main thread and in the workers. */
export class ShardExecutor {
  private hooks: UpdateHooks = PLAIN_HOOKS;
  /** Per tensor: the wasm passes of its arena, JavaScript where it has none. */
  private readonly updatePasses: OptimizerPasses[];
  private readonly reducePasses: OptimizerPasses[];
  /** Per tensor: whether the model trains it (a frozen parameter's weights and moments are never touched). */
  private readonly trains: boolean[];

  constructor(
    private readonly model: EncoderClassifier,
    private readonly shard: number,
    private readonly state: SharedState,
    private readonly segments: Segment[],
    private readonly decays: boolean[],
    private readonly hooksFrom: HooksFrom,
  ) {
    this.updatePasses = state.values.map(() => jsPasses);
    this.reducePasses = state.values.map(() => jsPasses);
    this.trains = model.specs.map(trains);
    for (const arena of state.arenas) {
      const kernels = new OptimizerKernels(arena.memory, arena.draws[shard]);
      for (const t of arena.tensors) {
        this.updatePasses[t] = kernels;
        if (arena.shards) this.reducePasses[t] = kernels;
      }
    }
  }

  handle(req: Request): Reply {
    const s = this.state;
    switch (req.kind) {
      case 'grad': {
        const rng = req.dropoutSeed === null ? null : new Rng(streamSeed(req.dropoutSeed, this.shard));
        // A shard too large for one pass runs in several, each weighted by its share of the rows.
        let loss = 0;
        const seed = req.stepSeed ?? null;
        const term = seed === null ? undefined : this.hooks.consistency;
        this.passes(req.batch).forEach((b, k, all) => {
          const weight = (req.share ?? 1) * (all.length === 1 ? 1 : b.batch / req.batch.batch);
          const pass = { weight, accumulate: k > 0 || !!req.accumulate };
          const consistency =
            term && seed !== null ? { term, noise: new Rng(streamSeed(seed, term.stream, this.shard, k)) } : undefined;
          loss += pass.weight * this.model.step(b, s.grads[this.shard], rng, pass, { seed, consistency }).loss;
        });
        return { loss };
      }
      case 'reduce': {
        let sumsq = 0;
        for (const seg of this.segments)
          sumsq = reduceSegment(s.grads, seg, req.weights, sumsq, this.reducePasses[seg.index]);
        return { sumsq };
      }
      case 'update': {
        const kept = new Array<number>(this.trains.length).fill(0);
        try {
          for (const seg of this.segments)
            if (this.trains[seg.index])
              kept[seg.index] += updateSegment(
                s,
                seg,
                this.hooks,
                req.step,
                req.coef,
                req.adam,
                this.decays[seg.index],
                this.updatePasses[seg.index],
              );
        } catch (e) {
          throw new Error(`${this.hooks.kind} update at step ${req.step}: ${(e as Error).message}`);
        }
        this.model.markDirty();
        return { kept };
      }
      case 'hooks':
        this.hooks = this.hooksFrom(req.prepared);
        this.copyFixedBits();
        return {};
      case 'reload':
        this.model.markDirty();
        return {};
      case 'predict':
        return { out: concat(this.passes(req.batch).map((b) => this.model.predict(b).logits)) };
      case 'features':
        return { out: concat(this.passes(req.batch).map((b) => this.model.features(b))) };
    }
  }

  /** Each thread copies its own segments' part of the fixed bitsets (segments start on whole bytes). */
  private copyFixedBits() {
    const fixed = this.hooks.fixedBits;
    if (!fixed) return;
    for (const { index, lo, hi } of this.segments) {
      const from = fixed[index];
      if (from) this.state.bits[index].set(from.subarray(lo >> 3, Math.ceil(hi / 8)), lo >> 3);
    }
  }

  /** The shard's rows in as few passes as the backend's heap allows (one, except on wasm for large models). */
  private passes(b: Batch): Batch[] {
    if (tf.getBackend() !== 'wasm') return [b];
    const rows = rowsPerPass(this.model.config, this.model.numLabels, b.seq);
    const count = Math.ceil(b.batch / rows);
    if (count <= 1) return [b];
    return Array.from({ length: count }, (_, k) =>
      sliceBatch(b, Math.floor((k * b.batch) / count), Math.floor(((k + 1) * b.batch) / count)),
    );
  }
}
