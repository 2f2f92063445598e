import { match } from 'ts-pattern';
import { jsPasses, type OptimizerPasses } from '../engine/optimizer.js';
import type { ParamSpec } from '../engine/params.js';
import { keepThreshold, Rng, streamSeed } from '../engine/rng.js';
import type { Recipe } from '../recipe/types.generated.js';
import { bitsetBytes, popcount } from './bitset.js';

export type Scope = 'all' | 'encoder';

/** Names of the independent random streams a run draws from (the second part of each stream seed). */
export const STREAMS = { order: 1, dropout: 2, fMask: 3, fisherDropout: 4, probe: 5 } as const;
export const inScope = (spec: ParamSpec, scope: Scope) => scope === 'all' || spec.group === 'encoder';

/**
 * How a strategy masks each step's gradient before the Adam moments see it, as plain data: it is sent to
 * the worker threads, each of which masks its own slice of the parameters.
 */
export type MaskSpec =
  | { kind: 'vanilla' }
  /**
   * Child-Tuning-F: keep each in-scope element with probability p and divide it by p. `replay`: the keep bits
   * are not drawn but already in the tensor's bitset (masks a run recorded, loaded before each update).
   */
  | { kind: 'child-tuning-f'; p: number; scoped: boolean[]; seed: number; replay: boolean }
  /** Child-Tuning-D: a fixed bitset per in-scope tensor; never rescaled. */
  | { kind: 'child-tuning-d'; masks: (Uint8Array | undefined)[]; maskWeightDecay: boolean };

/**
 * F draws its mask in chunks of this many elements, each from its own stream named by (seed, step, tensor,
 * chunk). Threads split the parameters at chunk boundaries, so the mask does not depend on the thread count.
 */
export const F_CHUNK = 8192;

/**
 * Masks grad[lo, hi) of tensor `index` in place for optimizer step `step`; returns how many elements were kept.
 * `lo` must be a multiple of F_CHUNK (the thread partition only splits tensors there). F draws each chunk's keep
 * bits into `bits`, the tensor's bitset (unless it replays recorded ones already there), then applies them, so the
 * mask applied is the one in the bitset that is counted and recorded. F's passes run in `passes` (the wasm ones
 * when grad and bits are in their arena), with the same result either way.
 */
export function maskRange(spec: MaskSpec, index: number, grad: Float32Array, lo: number, hi: number, step: number, passes: OptimizerPasses = jsPasses, bits?: Uint8Array): number {
  switch (spec.kind) {
    case 'vanilla':
      return hi - lo;
    case 'child-tuning-f': {
      if (!spec.scoped[index] || spec.p >= 1) return hi - lo;
      const { threshold, scale } = keepThreshold(spec.p);
      const own = bits ?? new Uint8Array(bitsetBytes(hi));
      if (!spec.replay) {
        for (let start = lo; start < hi; ) {
          const chunk = Math.floor(start / F_CHUNK);
          const end = Math.min(hi, (chunk + 1) * F_CHUNK);
          passes.fdraw(own, start, end, new Rng(streamSeed(spec.seed, step, index, chunk)).state, threshold);
          start = end;
        }
      }
      passes.fapply(grad, own, lo, hi, scale);
      return popcount(own.subarray(lo >> 3), hi - lo);
    }
    case 'child-tuning-d': {
      // Branch-free multiply by the bit. D's kept fractions come from its fixed bitsets, so nothing is counted here.
      const bits = spec.masks[index];
      if (bits) for (let j = lo; j < hi; j++) grad[j] *= (bits[j >> 3] >> (j & 7)) & 1;
      return hi - lo;
    }
  }
}

/** Elements whose weight decay is applied; undefined means all (the reference does not mask decay). */
export const decayBits = (spec: MaskSpec, index: number): Uint8Array | undefined => (spec.kind === 'child-tuning-d' && spec.maskWeightDecay ? spec.masks[index] : undefined);

/**
 * Where F's masks come from or go to, step by step (replay and record; src/run/fmasks.ts). `bits` holds one
 * bitset per tensor in the engine's layout, shared by the threads.
 */
export interface FMaskLog {
  /** Replay: fills the in-scope tensors' bitsets with the masks recorded for optimizer step `step`. */
  load?(step: number, bits: Uint8Array[]): void;
  /** Record: stores the masks step `step` applied. */
  save?(step: number, bits: Uint8Array[]): void;
}

/** A strategy: its mask, plus the kept fractions it reports (F's are counted from its masks as the run goes). */
export class Strategy {
  private readonly kept = new Map<number, { kept: number; total: number }>();
  /** F's mask record or replay, when the recipe asks for one. */
  masks?: FMaskLog;

  constructor(readonly spec: MaskSpec) {}

  get kind(): Recipe['strategy']['kind'] {
    return this.spec.kind;
  }

  /** Adds one step's kept counts for a tensor (F only; D's fractions are fixed by its bitsets). */
  record(index: number, kept: number, total: number) {
    if (this.spec.kind !== 'child-tuning-f' || !this.spec.scoped[index]) return;
    const s = this.kept.get(index) ?? { kept: 0, total: 0 };
    s.kept += kept;
    s.total += total;
    this.kept.set(index, s);
  }

  /** F's running counts as [tensor, kept, total] (checkpointed so a resumed run reports the same fractions). */
  keptCounts(): [number, number, number][] {
    return [...this.kept].map(([i, k]) => [i, k.kept, k.total]);
  }

  /** Kept fraction per parameter tensor, measured over the run so far. */
  keptFractions(specs: readonly ParamSpec[]): Record<string, number> {
    const spec = this.spec;
    return Object.fromEntries(specs.map((s, i) => {
      if (spec.kind === 'child-tuning-d') {
        const bits = spec.masks[i];
        const n = s.shape.reduce((a, b) => a * b, 1);
        return [s.name, bits ? popcount(bits, n) / n : 1];
      }
      const k = this.kept.get(i);
      return [s.name, k ? k.kept / k.total : 1];
    }));
  }
}

export const vanilla = () => new Strategy({ kind: 'vanilla' });
export const childTuningF = (p: number, scope: Scope, specs: readonly ParamSpec[], seed: number, replay = false) => new Strategy({ kind: 'child-tuning-f', p, scoped: specs.map((s) => inScope(s, scope)), seed, replay });
export const childTuningD = (masks: (Uint8Array | undefined)[], maskWeightDecay: boolean) => new Strategy({ kind: 'child-tuning-d', masks, maskWeightDecay });

/** The strategy a recipe asks for; D's masks come from the fisher stage. */
export function strategyFor(recipe: Recipe, specs: readonly ParamSpec[], masks?: (Uint8Array | undefined)[]): Strategy {
  const s = recipe.strategy;
  return match(s.kind)
    .with('vanilla', () => vanilla())
    .with('child-tuning-f', () => childTuningF(s.reserve_p!, s.scope ?? 'all', specs, streamSeed(recipe.training.seed, STREAMS.fMask), s.f_masks?.replay !== undefined))
    .with('child-tuning-d', () => childTuningD(masks!, s.mask_weight_decay))
    .exhaustive();
}
