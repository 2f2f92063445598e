import { ChildtuneError } from '../engine/errors.js';
import type { Plan, PlannedTrial } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import { singleClassNote } from './artifacts.js';
import { latestCheckpoint } from './checkpoint.js';
import { RunError } from './errors.js';
import { executeTrial } from './executor.js';
import { Interrupted } from './interrupt.js';
import { reporter, type Io } from './reporter.js';
import type { RunDir } from './rundir.js';
import { failedStageOf, type StageRunners } from './walk.js';

/** How a run directory was made, so `--resume DIR` can rebuild the same plan without the command line. */
export interface Invocation {
  recipe: string;
  set: string[];
  allow_path: string[];
  trial: number;
  recipe_hash: string;
}

/**
 * Executes one trial into a run directory it owns (and unlocks), recording how it was invoked; with `resume`,
 * continues from the directory's last checkpoint. Failures leave error.json naming the stage and checkpoint.
 */
export async function runTrial(
  run: RunDir,
  plan: Plan,
  trial: PlannedTrial,
  recipe: Recipe,
  invocation: Invocation,
  io: Io,
  o: { quiet?: boolean; prefix?: string; resume?: boolean; force?: boolean; runners?: StageRunners },
) {
  const prefix = o.prefix ?? '';
  try {
    if (!run.exists('invocation.json')) run.writeJson('invocation.json', invocation);
    io.err(`${prefix}run directory: ${run.dir}`);
    const results = (await executeTrial(plan, trial, recipe, run, reporter(io, !!o.quiet, prefix), {
      resume: o.resume,
      force: o.force,
      runners: o.runners,
    }))!;
    io.err(
      `${prefix}final: ${Object.entries(results.metrics)
        .map(([k, v]) => `${k} ${v.toFixed(4)}`)
        .join(', ')}${singleClassNote(results)}`,
    );
    return results;
  } catch (e) {
    recordFailure(run, e as Error);
    throw e;
  } finally {
    run.unlock();
  }
}

/**
 * error.json: 'interrupted' (a signal; `--resume` continues) or 'failed', with the stage, message and last
 * checkpoint. When it cannot be written (the disk that failed the run is full), the original error still
 * reaches the user, with a note.
 */
function recordFailure(run: RunDir, e: Error) {
  const interrupted = e instanceof Interrupted;
  const hint = e instanceof ChildtuneError ? e.hint : undefined;
  try {
    run.writeJson('error.json', {
      state: interrupted ? 'interrupted' : 'failed',
      stage: failedStageOf(e),
      message: e.message,
      hint: hint ?? null,
      last_checkpoint: lastCheckpointOrNull(run.dir),
      ...(interrupted ? { signal: e.signal } : {}),
      at: new Date().toISOString(),
    });
  } catch (writeFailure) {
    e.message += ` (and ${run.path('error.json')} could not be written: ${(writeFailure as Error).message})`;
  }
}

/** The latest checkpoint for error.json, or null where there is none or its pointer is damaged (the failure itself, maybe). */
function lastCheckpointOrNull(dir: string): string | null {
  try {
    return latestCheckpoint(dir) ?? null;
  } catch (e) {
    if (e instanceof RunError) return null;
    throw e;
  }
}
