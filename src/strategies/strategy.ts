import { jsPasses, type OptimizerPasses } from '../engine/optimizer.js';
import type { UpdateObserver } from '../engine/parallel/hooks.js';
import { trains } from '../engine/modules/param.js';
import { sizeOf, type ParamSpec } from '../engine/params.js';
import { composeHooks } from './compose-hooks.js';
import type {
  Kind,
  StrategyDefinition,
  StrategyHooks,
  StrategyOptions,
  StrategyReport,
  TrainingState,
} from './definition.js';
import { effectiveTrainable } from './effective.js';

export { inScope, type Scope } from './scope.js';

/** results.json's and mask-stats.json's trainable counts; the effective ones where Child-Tuning masks. */
export interface TrainableFields {
  trainable_parameters: number;
  trainable_share: number;
  effective_trainable_parameters?: number;
  effective_trainable_share?: number;
}

/** Names of the independent random streams a run draws from (the second part of each stream seed). */
export const STREAMS = {
  order: 1,
  dropout: 2,
  fMask: 3,
  fisherDropout: 4,
  probe: 5,
  /** A training step's own draws (the engine's step seed), keyed further by the streams below. */
  step: 6,
  mixout: 7,
  r3fNoise: 8,
  gateNoise: 9,
} as const;

/** What a worker thread receives to rebuild a strategy's hooks (registry.ts: hooksFrom). */
export interface PreparedStrategy {
  kind: Kind;
  prepared: unknown;
  /** Child-Tuning inside this kind's trainable set (strategy.child_tuning, compose.ts): its kind and plain data. */
  childTuning?: { kind: Kind; prepared: unknown };
}

/** A prepared Child-Tuning part of another strategy: its definition and plain data. */
export interface InnerStrategy {
  definition: StrategyDefinition;
  prepared: unknown;
}

/** The hooks of a prepared strategy, with its Child-Tuning part's mask composed in where it has one. */
export const hooksOf = (definition: StrategyDefinition, prepared: unknown, inner?: InnerStrategy): StrategyHooks =>
  inner ? composeHooks(definition.hooks(prepared), inner.definition.hooks(inner.prepared)) : definition.hooks(prepared);

/**
 * Transforms grad[lo, hi) of tensor `index` as the hooks say for optimizer step `step`; returns how many elements
 * were kept. `lo` must be a multiple of SEGMENT_GRAIN. `bits`: the tensor's bitset, where the transform keeps
 * its mask (a scratch one when absent).
 */
export function maskRange(
  hooks: StrategyHooks,
  index: number,
  grad: Float32Array,
  lo: number,
  hi: number,
  step: number,
  passes: OptimizerPasses = jsPasses,
  bits?: Uint8Array,
): number {
  return hooks.transform ? hooks.transform.apply(index, grad, lo, hi, step, passes, bits) : hi - lo;
}

/**
 * Where per-update masks come from or go to, step by step (F's replay and record; src/run/fmasks.ts). `bits`
 * holds one bitset per tensor in the engine's layout, shared by the threads.
 */
export interface FMaskLog {
  /** Replay: fills the in-scope tensors' bitsets with the masks recorded for optimizer step `step`. */
  load?(step: number, bits: Uint8Array[]): void;
  /** Record: stores the masks step `step` applied. */
  save?(step: number, bits: Uint8Array[]): void;
  /** Record: the training is over (the recording gets its checksum). */
  finish?(): void;
}

/**
 * A strategy as a run uses it: its definition, the plain data it was prepared as, the hooks built from that, and
 * the kept fractions it reports (counted from the masks as the run goes where the definition says so).
 */
export class Strategy implements UpdateObserver {
  private readonly kept = new Map<number, { kept: number; total: number }>();
  /** The hooks the engine runs (built from `prepared`, as each worker thread builds its own). */
  readonly spec: StrategyHooks;
  private readonly counted: readonly boolean[];
  /** The mask record or replay, when the recipe asks for one. */
  masks?: FMaskLog;

  /** `inner`: Child-Tuning inside this strategy's trainable set; its masks are the ones counted and reported. */
  constructor(
    readonly definition: StrategyDefinition,
    readonly prepared: unknown,
    readonly inner?: InnerStrategy,
  ) {
    this.spec = hooksOf(definition, prepared, inner);
    this.counted = (inner ? inner.definition.counted?.(inner.prepared) : definition.counted?.(prepared)) ?? [];
  }

  get kind(): Kind {
    return this.definition.kind;
  }

  /** Whether kept counts are measured as the run goes (else the fractions are fixed). */
  get counts(): boolean {
    return this.counted.some(Boolean);
  }

  /** What worker threads rebuild the hooks from. */
  get message(): PreparedStrategy {
    const inner = this.inner && { kind: this.inner.definition.kind, prepared: this.inner.prepared };
    return { kind: this.kind, prepared: this.prepared, ...(inner && { childTuning: inner }) };
  }

  /**
   * Its fields of results.json and mask-stats.json: the kind's own; with Child-Tuning inside, reserve_p is that
   * part's and child_tuning says which.
   */
  report(options: StrategyOptions): StrategyReport {
    const own = this.definition.report(options as never);
    const ct = (options as { child_tuning?: { kind: string; reserve_p: number; scope: string } }).child_tuning;
    if (!ct) return own;
    const inside = {
      reserve_p: ct.reserve_p,
      child_tuning: { kind: ct.kind, reserve_p: ct.reserve_p, scope: ct.scope },
    };
    return { results: { ...own.results, ...inside }, maskStats: { ...own.maskStats, ...inside } };
  }

  /** Adds one step's kept counts for a tensor (only where the definition counts them). */
  record(index: number, kept: number, total: number) {
    if (!this.counted[index]) return;
    const s = this.kept.get(index) ?? { kept: 0, total: 0 };
    s.kept += kept;
    s.total += total;
    this.kept.set(index, s);
  }

  /** Running counts as [tensor, kept, total] (checkpointed so a resumed run reports the same fractions). */
  keptCounts(): [number, number, number][] {
    return [...this.kept].map(([i, k]) => [i, k.kept, k.total]);
  }

  /** Kept fraction per parameter tensor, measured over the run so far. */
  keptFractions(specs: readonly ParamSpec[]): Record<string, number> {
    return Object.fromEntries(
      specs.map((s, i) => {
        const fixed = this.inner
          ? this.inner.definition.fixedFraction?.(this.inner.prepared, i, sizeOf(s))
          : this.definition.fixedFraction?.(this.prepared, i, sizeOf(s));
        if (fixed !== undefined) return [s.name, fixed];
        const k = this.kept.get(i);
        return [s.name, k ? k.kept / k.total : 1];
      }),
    );
  }

  /**
   * Parameters that train, and their share of all (frozen tensors excluded); with Child-Tuning, also the effective
   * count and share (reserve_p of the tensors in its scope: effective.ts), which a report compares with other kinds.
   */
  trainable(specs: readonly ParamSpec[], options: StrategyOptions): TrainableFields {
    const sizes = specs.map(sizeOf);
    const total = sizes.reduce((a, b) => a + b, 0);
    const trained = specs.map((s, i) => trains(s) && (!this.spec.trains || this.spec.trains[i]));
    const trainable = sizes.reduce((a, n, i) => a + (trained[i] ? n : 0), 0);
    const effective = effectiveTrainable(options, specs, trained);
    return {
      trainable_parameters: trainable,
      trainable_share: trainable / total,
      ...(effective !== undefined && {
        effective_trainable_parameters: effective,
        effective_trainable_share: effective / total,
      }),
    };
  }

  /** The learning rate of optimizer step `step` where the strategy schedules its own (what the log reports). */
  learningRate(step: number): number | undefined {
    return this.definition.learningRate?.(this.prepared, step);
  }

  /** Whether the strategy changes the training state at the end of optimizer step `step`. */
  changesAt(step: number): boolean {
    return this.definition.changeStep?.(this.prepared) === step;
  }

  /** The strategy's change to the training state (at the step `changesAt` names); whether it changed anything. */
  changeAt(state: TrainingState): boolean {
    return this.definition.changeAt?.(this.prepared, state) ?? false;
  }

  get readsBits(): boolean {
    return this.counts && !!this.masks?.save;
  }

  before(step: number, bits: Uint8Array[]) {
    this.masks?.load?.(step, bits);
  }

  /**
   * Records each counted tensor's kept elements, as the threads counted them from its bitset (the mask itself, not
   * a tally), then records the masks.
   */
  after(step: number, bits: Uint8Array[], sizes: readonly number[], kept: readonly number[]) {
    if (!this.counts) return;
    this.counted.forEach((c, i) => c && this.record(i, kept[i], sizes[i]));
    this.masks?.save?.(step, bits);
  }
}
