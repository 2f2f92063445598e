import path from 'node:path';
import cliProgress from 'cli-progress';
import { compilePlan } from '../plan/compiler.js';
import { loadRecipe } from '../recipe/index.js';
import { formatDiagnostics } from '../recipe/format.js';
import { executeTrial, type Reporter } from './executor.js';
import { RunError } from './errors.js';
import { RunDir } from './rundir.js';

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Progress bars on a terminal, plain lines (about ten per stage) otherwise. */
function reporter(io: Io, quiet: boolean, prefix: string): Reporter {
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

/** `childtune run`: validate, plan, then execute each trial (or just --trial K) into its own run directory. */
export async function runCommand(file: string, opts: { set: string[]; allowPath: string[]; json?: boolean; trial?: number; quiet?: boolean }, io: Io): Promise<number> {
  const loaded = loadRecipe(file, { sets: opts.set, allowedRoots: opts.allowPath });
  const compiled = compilePlan(loaded, path.resolve(file));
  if (!compiled.plan) {
    io.err(formatDiagnostics(compiled.diagnostics));
    return 1;
  }
  const plan = compiled.plan;
  let trials = plan.trials;
  if (opts.trial !== undefined) {
    trials = trials.filter((t) => t.index === opts.trial);
    if (!trials.length) throw new RunError(`no trial ${opts.trial}: the recipe has trials 0..${plan.trials.length - 1}`);
  }
  const summaries = [];
  for (const trial of trials) {
    const recipe = compiled.recipes[trial.index];
    const name = (recipe.name ?? `${recipe.dataset.task.replace('/', '-')}-${recipe.strategy.kind}`) + (plan.trials.length > 1 ? `-t${trial.index}` : '');
    const run = RunDir.create(recipe.runtime.output_dir, name);
    const prefix = plan.trials.length > 1 ? `[trial ${trial.index}] ` : '';
    io.err(`${prefix}run directory: ${run.dir}`);
    try {
      const results = await executeTrial(plan, trial, recipe, run, reporter(io, !!opts.quiet, prefix));
      summaries.push({ dir: run.dir, ...results });
      io.err(`${prefix}final: ${Object.entries(results.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
    } catch (e) {
      run.writeJson('error.json', { stage: e instanceof RunError ? e.stage ?? null : null, message: (e as Error).message, hint: (e as { hint?: string }).hint ?? null, at: new Date().toISOString() });
      throw e;
    } finally {
      run.unlock();
    }
  }
  if (opts.json) io.out(JSON.stringify(summaries, null, 2));
  else for (const s of summaries) io.out(`${s.dir}: ${Object.entries(s.metrics).map(([k, v]) => `${k}=${v.toFixed(4)}`).join(' ')}`);
  return 0;
}
