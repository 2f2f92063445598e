import path from 'node:path';
import cliProgress from 'cli-progress';
import { parse } from 'yaml';
import { compilePlan, volatile } from '../plan/compiler.js';
import type { Plan, PlannedTrial } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import { loadRecipe } from '../recipe/index.js';
import { formatDiagnostics } from '../recipe/format.js';
import { latestCheckpoint } from './checkpoint.js';
import { executeTrial, type Reporter } from './executor.js';
import { fetchMissing } from './fetch.js';
import { RunError } from './errors.js';
import { checkInterrupt, Interrupted, interruptible } from './interrupt.js';
import { RunDir } from './rundir.js';

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Progress bars on a terminal, plain lines (about ten per stage) otherwise. */
export function reporter(io: Io, quiet: boolean, prefix: string): Reporter {
  const tty = !quiet && process.stderr.isTTY;
  return {
    log: (line) => { if (!quiet) io.err(`${prefix}${line}`); },
    stage(name, total) {
      const started = performance.now();
      if (tty) {
        const bar = new cliProgress.SingleBar({ format: `${prefix}${name.padEnd(6)} [{bar}] {value}/{total} | {info} | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: false, stream: process.stderr }, cliProgress.Presets.shades_classic);
        bar.start(total, 0, { info: '' });
        return {
          tick: (done, info) => bar.update(done, { info: Object.entries(info ?? {}).map(([k, v]) => `${k} ${v}`).join(' ') }),
          end: () => bar.stop(),
        };
      }
      let next = 0;
      return {
        tick(done, info) {
          if (quiet || done < next) return;
          next = done + Math.max(1, Math.ceil(total / 10));
          const eta = ((performance.now() - started) / 1000 / done) * (total - done);
          io.err(`${prefix}${name} ${done}/${total}${info ? ' ' + Object.entries(info).map(([k, v]) => `${k} ${v}`).join(' ') : ''} eta ${eta.toFixed(0)}s`);
        },
        end() {
          if (!quiet) io.err(`${prefix}${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
        },
      };
    },
  };
}

/** How a run directory was made, so `--resume DIR` can rebuild the same plan without the command line. */
export interface Invocation {
  recipe: string;
  set: string[];
  allow_path: string[];
  trial: number;
  recipe_hash: string;
}

interface RunOptions {
  set: string[];
  allowPath: string[];
  json?: boolean;
  trial?: number;
  quiet?: boolean;
  resume?: string;
  /** Printed after the results (not with --json): what to try next, given the run directories. */
  nextSteps?: (dirs: string[]) => string;
  /** Resume although the model or data changed since the run started (logged in inputs.json). */
  force?: boolean;
}

/** `childtune run`: validate, plan, then execute each trial (or just --trial K) into its own run directory. */
export async function runCommand(file: string | undefined, opts: RunOptions, io: Io): Promise<number> {
  return interruptible(io.err, () => runRecipe(file, opts, io));
}

async function runRecipe(file: string | undefined, opts: RunOptions, io: Io): Promise<number> {
  if (file?.endsWith('.lock.json')) {
    if (opts.trial === undefined) throw new RunError(`${file} is a sweep lock file: say which trial to run with --trial K`);
    const { runLockedTrial } = await import('./sweep.js');
    return runLockedTrial(file, opts.trial, io, opts.quiet, opts.force);
  }
  const resumed = opts.resume ? RunDir.open(opts.resume, io.err) : undefined;
  try {
    const invocation = resumed?.readJson<Invocation>('invocation.json');
    if (resumed?.exists('results.json')) {
      io.err(`${resumed.dir} already finished (results.json exists); nothing to resume`);
      return 0;
    }
    const recipeFile = file ?? invocation?.recipe;
    if (!recipeFile) throw new RunError('run needs a recipe file, or --resume RUN_DIR');
    const sets = file ? opts.set : invocation?.set ?? [];
    const allowPath = file ? opts.allowPath : invocation?.allow_path ?? [];
    await fetchMissing(recipeFile, { sets, allowedRoots: allowPath }, io, opts.quiet);
    const loaded = loadRecipe(recipeFile, { sets, allowedRoots: allowPath });
    const compiled = compilePlan(loaded, path.resolve(recipeFile));
    if (!compiled.plan) {
      io.err(formatDiagnostics(compiled.diagnostics));
      return 1;
    }
    const plan = compiled.plan;
    const only = invocation?.trial ?? opts.trial;
    const trials = only === undefined ? plan.trials : plan.trials.filter((t) => t.index === only);
    if (!trials.length) throw new RunError(`no trial ${only}: the recipe has trials 0..${plan.trials.length - 1}`);
    if (resumed && invocation && trials[0].recipeHash !== invocation.recipe_hash) {
      const before = volatile(parse(resumed.readText('recipe.resolved.yaml')) as Recipe);
      throw new RunError(`cannot resume ${resumed.dir}: the recipe's run-defining fields changed: ${diffPaths(before, volatile(compiled.recipes[trials[0].index])).join(', ')}`, 'Resume with the recipe the run was started with, or start a new run.');
    }
    const summaries = [];
    for (const trial of trials) {
      checkInterrupt();
      const recipe = compiled.recipes[trial.index];
      const name = (recipe.name ?? `${recipe.dataset.task.replace('/', '-')}-${recipe.strategy.kind}`) + (plan.trials.length > 1 ? `-t${trial.index}` : '');
      const run = resumed ?? RunDir.create(recipe.runtime.output_dir, name, io.err);
      const record = { recipe: path.resolve(recipeFile), set: sets, allow_path: allowPath.map((p) => path.resolve(p)), trial: trial.index, recipe_hash: trial.recipeHash };
      const results = await runTrial(run, plan, trial, recipe, record, io, { quiet: opts.quiet, prefix: plan.trials.length > 1 ? `[trial ${trial.index}] ` : '', resume: !!resumed, force: opts.force });
      summaries.push({ dir: run.dir, ...results });
    }
    if (opts.json) io.out(JSON.stringify(summaries, null, 2));
    else for (const s of summaries) io.out(`${s.dir}: ${Object.entries(s.metrics).map(([k, v]) => `${k}=${v.toFixed(4)}`).join(' ')}`);
    if (!opts.json && opts.nextSteps) io.out(opts.nextSteps(summaries.map((s) => s.dir)));
    return 0;
  } finally {
    resumed?.unlock();
  }
}

/**
 * Executes one trial into a run directory it owns (and unlocks), recording how it was invoked; with `resume`,
 * continues from the directory's last checkpoint. Failures leave error.json naming the stage and checkpoint.
 */
export async function runTrial(run: RunDir, plan: Plan, trial: PlannedTrial, recipe: Recipe, invocation: Invocation, io: Io, o: { quiet?: boolean; prefix?: string; resume?: boolean; force?: boolean }) {
  const prefix = o.prefix ?? '';
  try {
    if (!run.exists('invocation.json')) run.writeJson('invocation.json', invocation);
    io.err(`${prefix}run directory: ${run.dir}`);
    const results = (await executeTrial(plan, trial, recipe, run, reporter(io, !!o.quiet, prefix), { resume: o.resume, force: o.force }))!;
    io.err(`${prefix}final: ${Object.entries(results.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
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
function recordFailure(run: RunDir, e: Error & { stage?: string; hint?: string }) {
  const interrupted = e instanceof Interrupted;
  try {
    run.writeJson('error.json', { state: interrupted ? 'interrupted' : 'failed', stage: e.stage ?? 'setup', message: e.message, hint: e.hint ?? null, last_checkpoint: latestCheckpoint(run.dir) ?? null, ...(interrupted ? { signal: e.signal } : {}), at: new Date().toISOString() });
  } catch (writeFailure) {
    e.message += ` (and ${run.path('error.json')} could not be written: ${(writeFailure as Error).message})`;
  }
}

/** Dotted paths at which two plain values differ. */
export function diffPaths(a: unknown, b: unknown, at = ''): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
  if (isObject(a) && isObject(b)) return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().flatMap((k) => diffPaths(a[k], b[k], at ? `${at}.${k}` : k));
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at || '(root)'];
}
