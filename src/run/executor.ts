import { stringify } from 'yaml';
import { selectBackend, type BackendName } from '../engine/backend.js';
import { describeKernels, selectKernel, type KernelChoice } from '../engine/native.js';
import { deviceLabel } from '../engine/webgpu/device.js';
import { overBudget, overDevice } from '../plan/budget.js';
import { kernelsFor, stageRuntime } from '../plan/runtime.js';
import type { Plan, PlannedTrial, StageKind } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import type { ResultsFile } from './artifacts.js';
import { StageCache } from './cache.js';
import { checkpointKernels } from './checkpoint.js';
import { RunError } from './errors.js';
import { checkInputs, trialInputs } from './inputs.js';
import { threadsFor } from './parallel.js';
import type { Reporter } from './reporter.js';
import type { RunDir } from './rundir.js';
import { STAGE_RUNNERS } from './stages/index.js';
import {
  attributeFailure,
  stagesFor,
  trialStagesOf,
  walkStages,
  type StageRunners,
  type TrialContext,
} from './walk.js';

export interface ExecuteOptions {
  resume?: boolean;
  force?: boolean;
  /** Walk only up to (and including) the trial's stages of this kind: `sweep --prepare` stops after 'fisher'. */
  until?: StageKind;
  /** The same as until: 'fisher'. */
  stopAfterFisher?: boolean;
  /** The runner per stage kind (tests give their own). */
  runners?: StageRunners;
}

/**
 * Executes one trial of a plan into a run directory: the setup (inputs recorded, memory budget, backend),
 * then a walk of the trial's stages in dependency order. Returns results.json's content, or null when the
 * walk stopped early (`until`) or the trial has no stage of that kind.
 */
export async function executeTrial(
  plan: Plan,
  trial: PlannedTrial,
  recipe: Recipe,
  run: RunDir,
  report: Reporter,
  opts: ExecuteOptions = {},
): Promise<Omit<ResultsFile, 'version'> | null> {
  const until = opts.until ?? (opts.stopAfterFisher ? 'fisher' : undefined);
  const targets = until ? trialStagesOf(plan, trial, until) : [plan.report];
  const closers: (() => unknown)[] = [];
  try {
    const ctx = await setup(plan, trial, recipe, run, report, opts, closers);
    if (!targets.length) return null;
    await walkStages(stagesFor(plan, trial, targets), opts.runners ?? STAGE_RUNNERS, ctx);
    return until ? null : (ctx.outputs.get(plan.report) as Omit<ResultsFile, 'version'>);
  } catch (e) {
    attributeFailure(e, 'setup');
    throw e;
  } finally {
    for (const release of closers.reverse()) await release();
  }
}

/** Before the first stage: inputs recorded (or checked on a resume), the memory budget, the resolved backend. */
async function setup(
  plan: Plan,
  trial: PlannedTrial,
  recipe: Recipe,
  run: RunDir,
  report: Reporter,
  opts: ExecuteOptions,
  closers: (() => unknown)[],
): Promise<TrialContext> {
  checkInputs(run, trialInputs(plan, trial), !!opts.resume, !!opts.force, report.log);
  const stageOf = (id: string) => plan.stages.find((s) => s.id === id)!;
  // Refused before anything is allocated: the plan's estimates against this machine's memory.
  for (const id of [trial.fisher, trial.train]) {
    const over = id && overBudget(stageOf(id));
    if (over)
      throw new RunError(
        `${recipe.model.path}: ${over}`,
        'Use a smaller model, a smaller batch_size or max_seq_length, or fewer runtime.threads.',
        'setup',
      );
  }
  run.writeText('recipe.resolved.yaml', stringify(recipe));
  run.writeJson('plan.json', plan);

  // bf16 is the CPU's: auto goes straight to its kernels rather than to a GPU that would refuse it.
  const backend = await selectBackend(
    recipe.training.precision === 'bf16' && recipe.runtime.backend === 'auto' ? 'wasm' : recipe.runtime.backend,
  );
  const kernels = chosenKernels(recipe, backend.name, opts.resume ? checkpointKernels(run.dir) : undefined);
  for (const id of [trial.fisher, trial.train]) {
    const over = id && backend.device && overDevice(stageOf(id), backend.device);
    if (over)
      throw new RunError(
        `${recipe.model.path}: ${over}`,
        'Use a smaller batch_size or max_seq_length, or a GPU whose adapter allows larger buffers.',
        'setup',
      );
  }
  report.log(
    `backend: ${backend.name}${backend.skipped.length ? ` (skipped: ${backend.skipped.map((s) => `${s.name}: ${s.why}`).join('; ')})` : ''}`,
  );
  if (kernels) report.log(`matrix products: ${describeKernels(kernels)}`);
  if (backend.device) report.log(`device: ${deviceLabel(backend.device)}`);
  return {
    plan,
    trial,
    recipe,
    run,
    report,
    stageOf,
    cache: new StageCache(recipe.runtime.cache_dir),
    runtime: stageRuntime(backend.name, threadsFor(recipe.runtime.threads, backend.name), kernels),
    kernels,
    backendSkipped: backend.skipped,
    device: backend.device,
    resume: !!opts.resume,
    force: !!opts.force,
    outputs: new Map(),
    durations: {},
    onClose: (release) => closers.push(release),
  };
}

/**
 * The matrix kernels of this trial on the CPU, selected for this thread (the pool's workers select the same): what
 * `validate` refused cannot reach here unless the machine changed since, and is then refused the same way.
 */
function chosenKernels(recipe: Recipe, backend: BackendName, prefer?: string): KernelChoice | undefined {
  if (recipe.training.precision === 'bf16' && backend !== 'wasm')
    throw new RunError(
      `training.precision: bf16 runs on the CPU's native kernels, and this run resolved runtime.backend ${backend}`,
      'Set runtime.backend: wasm, or training.precision: fp32.',
      'setup',
    );
  const choice = kernelsFor(recipe, backend, prefer);
  if (!choice) return undefined;
  if ('refused' in choice) throw new RunError(choice.refused, choice.hint, 'setup');
  selectKernel(choice.kernel);
  return choice;
}
