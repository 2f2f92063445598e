import { ChildtuneError } from '../engine/errors.js';
import type { KernelChoice } from '../engine/native.js';
import type { DeviceInfo } from '../engine/webgpu/device.js';
import type { StageRuntime } from '../plan/runtime.js';
import type { Plan, PlannedTrial, Stage, StageKind } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { StageCache } from './cache.js';
import type { Reporter } from './reporter.js';
import type { RunDir } from './rundir.js';

/** What every runner of one trial's walk sees: the plan, the trial, its run directory, the one stage cache. */
export interface TrialContext {
  plan: Plan;
  trial: PlannedTrial;
  recipe: Recipe;
  run: RunDir;
  report: Reporter;
  cache: StageCache;
  /** The backend, thread count and matrix arithmetic this process resolved (the plan predicted them). */
  runtime: StageRuntime;
  /** The CPU's matrix kernels (wasm backend): the pool's workers run the same. */
  kernels?: KernelChoice;
  /** Backends tried before the one resolved, and why each was skipped (results.json records them). */
  backendSkipped: { name: string; why: string }[];
  /** The GPU the trial runs on (webgpu). */
  device?: DeviceInfo;
  resume: boolean;
  force: boolean;
  /** The outputs of the stages run so far, by stage id. */
  outputs: Map<string, unknown>;
  /** Wall-clock seconds per stage kind (stages of one kind summed), for results.json. */
  durations: Partial<Record<StageKind, number>>;
  stageOf(id: string): Stage;
  /** Registers a release (a worker pool, a model) run when the walk ends, however it ends. */
  onClose(release: () => unknown): void;
}

/** How a cacheable stage's output is stored in the stage cache (files by name) and read back. */
export interface StageCacheFormat<O> {
  /** The entry's key: the planned hash unless the stage's real inputs differ from the plan's prediction. */
  key?(stage: Stage, ctx: TrialContext): string;
  store(output: O): Record<string, string | Uint8Array>;
  /** An upper bound of the entry's bytes, known before the stage runs: the cache must have that much free first. */
  bytes(stage: Stage, deps: unknown[], ctx: TrialContext): number;
  load(files: Record<string, Buffer>, stage: Stage, deps: unknown[], ctx: TrialContext): O;
  /** The log line's end on a hit, e.g. 'reusing its mask'. */
  reused: string;
}

/** One kind of stage: computes its output from its dependencies' outputs (in the order of stage.deps). */
export interface StageRunner<O = unknown> {
  run(stage: Stage, deps: unknown[], ctx: TrialContext): O | Promise<O>;
  /** Given for the kinds in CACHED_STAGES: the walk reads and writes their outputs through the stage cache. */
  cache?: StageCacheFormat<O>;
}

export type StageRunners = { readonly [K in StageKind]: StageRunner };

/** The stage a failure happened in, for error.json; 'setup' before the first stage. */
const failedStages = new WeakMap<object, string>();

export function failedStageOf(e: unknown): string {
  if (e instanceof ChildtuneError && e.stage) return e.stage;
  return (e && typeof e === 'object' ? failedStages.get(e) : undefined) ?? 'setup';
}

/** Marks an error with the stage it happened in, unless the thrower named one already. */
export function attributeFailure(e: unknown, stage: string) {
  if (e instanceof ChildtuneError) e.stage ??= stage;
  else if (e && typeof e === 'object' && !failedStages.has(e)) failedStages.set(e, stage);
}

/**
 * The stages of one trial that `targets` need, dependencies first: a depth-first walk of the plan's DAG.
 * The report stage spans every trial; only this trial's part of it is followed.
 */
export function stagesFor(plan: Plan, trial: PlannedTrial, targets: string[]): Stage[] {
  const byId = new Map(plan.stages.map((s) => [s.id, s]));
  const order: Stage[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id)) return;
    seen.add(id);
    const stage = byId.get(id)!;
    for (const d of depsIn(stage, trial, byId)) visit(d);
    order.push(stage);
  };
  targets.forEach(visit);
  return order;
}

/** A stage's dependencies within one trial. */
export const depsIn = (stage: Stage, trial: PlannedTrial, byId: Map<string, Stage>) =>
  stage.deps.filter((d) => byId.get(d)!.trials.includes(trial.index));

/** The outputs of a stage's dependencies of one kind (a pre-stage such as fisher, when the plan has one). */
export const depsOfKind = <T>(stage: Stage, deps: unknown[], ctx: TrialContext, kind: StageKind): T[] =>
  depsIn(stage, ctx.trial, new Map(ctx.plan.stages.map((s) => [s.id, s]))).flatMap((id, i) =>
    ctx.stageOf(id).kind === kind ? [deps[i] as T] : [],
  );

/** The ids of the trial's stages of one kind (its targets when a walk stops early, e.g. `--prepare`). */
export const trialStagesOf = (plan: Plan, trial: PlannedTrial, kind: StageKind) =>
  plan.stages.filter((s) => s.kind === kind && s.trials.includes(trial.index)).map((s) => s.id);

/**
 * Runs the given stages in order, each by its kind's runner on its dependencies' outputs; a cacheable stage
 * is read from the stage cache by its key when complete there, else computed and stored. The time of each
 * stage goes to ctx.durations; a failure is attributed to its stage.
 */
export async function walkStages(stages: Stage[], runners: StageRunners, ctx: TrialContext): Promise<void> {
  const byId = new Map(ctx.plan.stages.map((s) => [s.id, s]));
  for (const stage of stages) {
    if (ctx.outputs.has(stage.id)) continue;
    const t0 = performance.now();
    try {
      const deps = depsIn(stage, ctx.trial, byId).map((d) => ctx.outputs.get(d));
      const runner = runners[stage.kind];
      ctx.outputs.set(
        stage.id,
        await (runner.cache
          ? cachedRun(stage, deps, runner as Required<StageRunner>, ctx)
          : runner.run(stage, deps, ctx)),
      );
    } catch (e) {
      attributeFailure(e, stage.kind);
      throw e;
    } finally {
      ctx.durations[stage.kind] = (ctx.durations[stage.kind] ?? 0) + (performance.now() - t0) / 1000;
    }
  }
}

async function cachedRun(stage: Stage, deps: unknown[], runner: Required<StageRunner>, ctx: TrialContext) {
  const format = runner.cache;
  const key = format.key?.(stage, ctx) ?? stage.hash;
  if (key !== stage.hash)
    ctx.report.log(
      `${stage.kind}: this run resolved ${ctx.runtime.backend} with ${ctx.runtime.threads} threads, not what the plan predicted; keyed ${key.slice(0, 12)}`,
    );
  ctx.cache.checkWritable();
  const entry = ctx.cache.read(stage.kind, key);
  if (entry.state === 'hit') {
    const output = format.load(entry.files, stage, deps, ctx);
    ctx.report.log(`${stage.kind}: cached (${key.slice(0, 12)}), ${format.reused}`);
    return output;
  }
  if (entry.state === 'corrupt')
    ctx.report.log(
      `${stage.kind}: cache entry ${key.slice(0, 12)} is corrupt (${entry.why}); moved to ${entry.movedTo} and recomputing`,
    );
  ctx.cache.checkSpace(stage.kind, format.bytes(stage, deps, ctx));
  const output = await runner.run(stage, deps, ctx);
  ctx.cache.write(stage.kind, key, format.store(output));
  return output;
}
