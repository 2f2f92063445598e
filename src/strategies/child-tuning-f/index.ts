import { SEGMENT_GRAIN } from '../../engine/parallel/partition.js';
import type { ParamSpec } from '../../engine/params.js';
import { keepThreshold, MIN_KEEP_PROBABILITY, streamSeed } from '../../engine/rng.js';
import { diagnostic, type Diagnostic } from '../../recipe/diagnostics.js';
import { bitsetBytes, popcount } from '../../engine/bitset.js';
import { defineStrategy, kindReport, type StrategyHooks } from '../definition.js';
import { inScope, STREAMS, Strategy, type Scope } from '../strategy.js';

/**
 * F draws its mask in chunks of this many elements, each from its own stream named by (seed, step, tensor,
 * chunk). Threads split the parameters only at multiples of it (the engine's grain), so the mask does not depend
 * on the thread count.
 */
export const F_CHUNK = SEGMENT_GRAIN;

/**
 * What F is prepared as. `replay`: the keep bits are not drawn but already in the tensor's bitset (masks a run
 * recorded, loaded before each update).
 */
export interface PreparedF {
  p: number;
  scoped: boolean[];
  seed: number;
  replay: boolean;
}

/**
 * Child-Tuning-F: keep each in-scope element with probability p and divide it by p. Each chunk's keep bits are
 * drawn into the tensor's bitset (unless replayed ones are already there) and applied from there, so the mask
 * applied is the one in the bitset that is counted and recorded; `passes` runs it (wasm where the bitset and the
 * gradient share an arena), with the same result either way.
 */
function hooks(f: PreparedF): StrategyHooks {
  const { threshold, scale } = keepThreshold(f.p);
  return {
    kind: 'child-tuning-f',
    transform: {
      apply(index, grad, lo, hi, step, passes, bits) {
        if (!f.scoped[index] || f.p >= 1) return hi - lo;
        const own = bits ?? new Uint8Array(bitsetBytes(hi));
        if (f.replay) {
          passes.fapply(grad, own, lo, hi, scale);
          return popcount(own.subarray(lo >> 3), hi - lo);
        }
        // Transforms see ranges starting on the engine's grain, F_CHUNK: chunk i of [lo, hi) is the tensor's first + i.
        if (lo % F_CHUNK) throw new Error(`F's mask range starts at ${lo}, not on a chunk of ${F_CHUNK} elements`);
        const first = lo / F_CHUNK;
        const seeds: number[] = [];
        for (let start = lo, chunk = first; start < hi; start += F_CHUNK, chunk++)
          seeds.push(streamSeed(f.seed, step, index, chunk));
        return passes.fmask(grad, own, lo, hi, F_CHUNK, seeds, threshold, scale);
      },
      device(index, size, step) {
        if (!f.scoped[index] || f.p >= 1) return [];
        if (f.replay) return [{ kind: 'mask', scale }];
        const seeds = Array.from({ length: Math.ceil(size / F_CHUNK) }, (_, chunk) =>
          streamSeed(f.seed, step, index, chunk),
        );
        return [
          { kind: 'draw', seeds, chunk: F_CHUNK, threshold },
          { kind: 'mask', scale },
        ];
      },
    },
  };
}

/** F draws each keep decision as a 16-bit number below reserve_p x 65536: a smaller reserve_p cannot be drawn. */
export function fResolution(p: number, pointer: string): Diagnostic[] {
  if (!(p > 0 && p < MIN_KEEP_PROBABILITY)) return [];
  return [
    diagnostic(
      'CT0301',
      `reserve_p is ${p}; Child-Tuning-F keeps at least 1/65536 (${MIN_KEEP_PROBABILITY}) of the elements`,
      pointer,
      {
        notes: [
          'F draws each keep decision at 16-bit resolution, so a smaller reserve_p would run at 1/65536 instead. Use reserve_p: 0.0000152587890625 or more, or child-tuning-d for a smaller child network.',
        ],
      },
    ),
  ];
}

const prepareF = (p: number, scope: Scope, specs: readonly ParamSpec[], seed: number, replay: boolean): PreparedF => ({
  p,
  scoped: specs.map((s) => inScope(s, scope)),
  seed,
  replay,
});

export const childTuningFDefinition = defineStrategy({
  kind: 'child-tuning-f',
  prepare: ({ recipe, options, specs }) =>
    prepareF(
      options.reserve_p!,
      options.scope ?? 'all',
      specs,
      streamSeed(recipe.training.seed, STREAMS.fMask),
      options.f_masks?.replay !== undefined,
    ),
  check: (o) => fResolution(o.reserve_p!, '/strategy/reserve_p'),
  hooks,
  counted: (f) => f.scoped.map((s) => s && f.p < 1),
  report: kindReport,
});

export const childTuningF = (p: number, scope: Scope, specs: readonly ParamSpec[], seed: number, replay = false) =>
  new Strategy(childTuningFDefinition, prepareF(p, scope, specs, seed, replay));
