import path from 'node:path';
import { parse } from 'yaml';
import { compilePlan, volatile } from '../plan/compiler.js';
import type { Recipe } from '../recipe/types.generated.js';
import { loadRecipe } from '../recipe/index.js';
import { formatDiagnostics } from '../recipe/format.js';
import { diffPaths } from './diff.js';
import { fetchMissing } from './fetch.js';
import { RunError } from './errors.js';
import { checkInterrupt, interruptible } from './interrupt.js';
import type { Io } from './reporter.js';
import { RunDir } from './rundir.js';
import { runLockedTrial } from './sweep.js';
import { runTrial, type Invocation } from './trial.js';

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
    if (opts.trial === undefined)
      throw new RunError(`${file} is a sweep lock file: say which trial to run with --trial K`);
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
    const sets = file ? opts.set : (invocation?.set ?? []);
    const allowPath = file ? opts.allowPath : (invocation?.allow_path ?? []);
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
      throw new RunError(
        `cannot resume ${resumed.dir}: the recipe's run-defining fields changed: ${diffPaths(before, volatile(compiled.recipes[trials[0].index])).join(', ')}`,
        'Resume with the recipe the run was started with, or start a new run.',
      );
    }
    const summaries = [];
    for (const trial of trials) {
      checkInterrupt();
      const recipe = compiled.recipes[trial.index];
      const name =
        (recipe.name ?? `${recipe.dataset.task.replace('/', '-')}-${recipe.strategy.kind}`) +
        (plan.trials.length > 1 ? `-t${trial.index}` : '');
      const run = resumed ?? RunDir.create(recipe.runtime.output_dir, name, io.err);
      const record = {
        recipe: path.resolve(recipeFile),
        set: sets,
        allow_path: allowPath.map((p) => path.resolve(p)),
        trial: trial.index,
        recipe_hash: trial.recipeHash,
      };
      const results = await runTrial(run, plan, trial, recipe, record, io, {
        quiet: opts.quiet,
        prefix: plan.trials.length > 1 ? `[trial ${trial.index}] ` : '',
        resume: !!resumed,
        force: opts.force,
      });
      summaries.push({ dir: run.dir, ...results });
    }
    if (opts.json) io.out(JSON.stringify(summaries, null, 2));
    else
      for (const s of summaries)
        io.out(
          `${s.dir}: ${Object.entries(s.metrics)
            .map(([k, v]) => `${k}=${v.toFixed(4)}`)
            .join(' ')}`,
        );
    if (!opts.json && opts.nextSteps) io.out(opts.nextSteps(summaries.map((s) => s.dir)));
    return 0;
  } finally {
    resumed?.unlock();
  }
}
