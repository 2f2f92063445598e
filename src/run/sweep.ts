import fs from 'node:fs';
import path from 'node:path';
import { cleanTemporaries, writeAtomic, writeJsonAtomic } from '../engine/files.js';
import { compilePlan, volatile } from '../plan/compiler.js';
import { sha256 } from '../plan/hash.js';
import { CACHED_STAGES, type Plan } from '../plan/stages.js';
import { loadRecipe } from '../recipe/index.js';
import { fetchMissing } from './fetch.js';
import { formatDiagnostics } from '../recipe/format.js';
import type { Recipe } from '../recipe/types.generated.js';
import { diffPaths } from './diff.js';
import type { Io } from './reporter.js';
import { runTrial } from './trial.js';
import { RunError } from './errors.js';
import { StageCache } from './cache.js';
import { executeTrial } from './executor.js';
import { checkInterrupt, interruptible } from './interrupt.js';
import { confined, freshDirectory, RunDir } from './rundir.js';

/**
 * A sweep directory: sweep.lock.json (written before any trial starts) lists every trial with its overrides,
 * the hash of its resolved recipe and its directory (trial-000, ...). Trials are independent: run in order by
 * `childtune sweep`, or one at a time by `childtune run --trial K LOCK` (a cluster array job).
 */
export const LOCK_FILE = 'sweep.lock.json';

export interface SweepLock {
  kind: 'childtune-sweep';
  version: 1;
  recipe: string;
  set: string[];
  allow_path: string[];
  created: string;
  trials: {
    index: number;
    dir: string;
    overrides: Record<string, unknown>;
    recipe_hash: string;
    fisher_hash: string | null;
    recipe: unknown;
  }[];
}

const trialDir = (k: number) => `trial-${String(k).padStart(3, '0')}`;

function compileFor(lock: Pick<SweepLock, 'recipe' | 'set' | 'allow_path'>, io: Io) {
  const loaded = loadRecipe(lock.recipe, { sets: lock.set, allowedRoots: lock.allow_path });
  const compiled = compilePlan(loaded, lock.recipe);
  if (!compiled.plan) {
    io.err(formatDiagnostics(compiled.diagnostics));
    return undefined;
  }
  return { plan: compiled.plan, recipes: compiled.recipes };
}

export function readLock(file: string): SweepLock {
  let lock: SweepLock;
  try {
    lock = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RunError(
      `${file}: not a readable sweep lock file (${(e as Error).message})`,
      `Pass the ${LOCK_FILE} that \`childtune sweep\` wrote.`,
    );
  }
  if (lock?.kind !== 'childtune-sweep' || lock.version !== 1)
    throw new RunError(
      `${file}: not a childtune sweep lock file`,
      `Pass the ${LOCK_FILE} that \`childtune sweep\` wrote.`,
    );
  return lock;
}

/** Recompiles the lock's recipe and refuses if any trial's run-defining fields no longer match the lock. */
function checkedPlan(lock: SweepLock, lockFile: string, io: Io) {
  const compiled = compileFor(lock, io);
  if (!compiled) return undefined;
  const { plan, recipes } = compiled;
  if (plan.trials.length !== lock.trials.length)
    throw new RunError(
      `${lockFile}: the recipe now expands to ${plan.trials.length} trials, the lock lists ${lock.trials.length}`,
      'Restore the recipe the sweep was started with, or start a new sweep.',
    );
  for (const t of lock.trials) {
    const now = plan.trials[t.index];
    if (now.recipeHash !== t.recipe_hash) {
      const changed = diffPaths(t.recipe, volatile(recipes[t.index]));
      throw new RunError(
        `${lockFile}: trial ${t.index}'s run-defining fields changed since the sweep started: ${changed.join(', ')}`,
        'Restore the recipe the sweep was started with, or start a new sweep.',
      );
    }
  }
  return { plan, recipes };
}

interface SweepOptions {
  set: string[];
  allowPath: string[];
  resume?: string;
  emit?: 'slurm' | 'k8s';
  prepare?: string;
  quiet?: boolean;
  json?: boolean;
  force?: boolean;
}

export async function sweepCommand(file: string | undefined, opts: SweepOptions, io: Io): Promise<number> {
  return interruptible(io.err, () => sweep(file, opts, io));
}

async function sweep(file: string | undefined, opts: SweepOptions, io: Io): Promise<number> {
  if (opts.prepare) return prepareShared(opts.prepare, io, opts.quiet);
  let dir: string;
  let lock: SweepLock;
  let plan: Plan;
  let recipes: Recipe[];
  if (opts.resume) {
    dir = opts.resume;
    const lockFile = path.join(dir, LOCK_FILE);
    if (!fs.existsSync(lockFile))
      throw new RunError(`${dir} has no ${LOCK_FILE}`, 'Pass the sweep directory that `childtune sweep` printed.');
    lock = readLock(lockFile);
    const checked = checkedPlan(lock, lockFile, io);
    if (!checked) return 1;
    ({ plan, recipes } = checked);
    cleanTemporaries(dir, false);
  } else {
    if (!file) throw new RunError('sweep needs a recipe file, or --resume SWEEP_DIR');
    const base = { recipe: path.resolve(file), set: opts.set, allow_path: opts.allowPath.map((p) => path.resolve(p)) };
    await fetchMissing(base.recipe, { sets: base.set, allowedRoots: base.allow_path }, io, opts.quiet);
    const compiled = compileFor(base, io);
    if (!compiled) return 1;
    ({ plan, recipes } = compiled);
    const r0 = recipes[0];
    dir = freshDirectory(r0.runtime.output_dir, `${r0.name ?? path.basename(file).replace(/\.ya?ml$/, '')}-sweep`);
    lock = {
      kind: 'childtune-sweep',
      version: 1,
      ...base,
      created: new Date().toISOString(),
      trials: plan.trials.map((t) => ({
        index: t.index,
        dir: trialDir(t.index),
        overrides: t.overrides,
        recipe_hash: t.recipeHash,
        fisher_hash: t.fisher ? plan.stages.find((s) => s.id === t.fisher)!.hash : null,
        recipe: JSON.parse(JSON.stringify(volatile(recipes[t.index]))),
      })),
    };
    writeJsonAtomic(path.join(dir, LOCK_FILE), lock);
  }
  io.err(`sweep directory: ${dir} (${lock.trials.length} trials)`);
  if (opts.emit) {
    const out = path.join(dir, opts.emit === 'slurm' ? 'sweep.slurm.sh' : 'sweep.k8s.yaml');
    writeAtomic(out, opts.emit === 'slurm' ? slurmScript(lock, dir) : k8sManifest(lock, dir));
    io.out(out);
    return 0;
  }
  const summaries = [];
  for (const t of lock.trials) {
    checkInterrupt();
    const runDir = confined(dir, t.dir);
    const results =
      (await runLockEntry(lock, runDir, t, { plan, recipes }, io, {
        quiet: opts.quiet,
        prefix: `[trial ${t.index}] `,
        force: opts.force,
      })) ?? JSON.parse(fs.readFileSync(path.join(runDir, 'results.json'), 'utf8'));
    summaries.push({ dir: runDir, ...results });
  }
  if (opts.json) io.out(JSON.stringify(summaries, null, 2));
  else {
    io.out(dir);
    // On stderr: stdout stays the directory alone, for scripts that capture it.
    io.err(sweepNextSteps(dir, lock));
  }
  return 0;
}

/** What a finished sweep prints after its directory: how to read it. */
function sweepNextSteps(dir: string, lock: SweepLock): string {
  const d = path.relative(process.cwd(), dir) || '.';
  const [a, b] = lock.trials;
  return [
    '',
    'Next steps:',
    "  the paper's table with significance against vanilla (Markdown, LaTeX, CSV, HTML):",
    `    npx childtune report ${d}`,
    ...(b
      ? ['  two trials side by side:', `    npx childtune compare ${path.join(d, a.dir)} ${path.join(d, b.dir)}`]
      : []),
    '  loss, learning rate and metric curves of every trial:',
    `    tensorboard --logdir ${d}`,
  ].join('\n');
}

/** `childtune run --trial K LOCK`: one trial of a locked sweep, into its fixed directory (resuming if partial). */
export async function runLockedTrial(
  lockFile: string,
  k: number,
  io: Io,
  quiet?: boolean,
  force?: boolean,
): Promise<number> {
  const lock = readLock(lockFile);
  const entry = lock.trials.find((t) => t.index === k);
  if (!entry) throw new RunError(`${lockFile} has trials 0..${lock.trials.length - 1}, not ${k}`);
  const checked = checkedPlan(lock, lockFile, io);
  if (!checked) return 1;
  await runLockEntry(lock, confined(path.dirname(path.resolve(lockFile)), entry.dir), entry, checked, io, {
    quiet,
    prefix: '',
    force,
  });
  return 0;
}

/**
 * Runs one locked trial into its fixed directory: skipped (undefined returned) when it finished earlier,
 * continued from its checkpoint when an earlier attempt left it partial.
 */
async function runLockEntry(
  lock: SweepLock,
  runDir: string,
  entry: SweepLock['trials'][number],
  compiled: { plan: Plan; recipes: Recipe[] },
  io: Io,
  o: { quiet?: boolean; prefix: string; force?: boolean },
) {
  if (fs.existsSync(path.join(runDir, 'results.json'))) {
    io.err(`${o.prefix || `trial ${entry.index}: `}finished earlier; skipped`);
    return undefined;
  }
  const partial = fs.existsSync(path.join(runDir, 'invocation.json'));
  const invocation = {
    recipe: lock.recipe,
    set: lock.set,
    allow_path: lock.allow_path,
    trial: entry.index,
    recipe_hash: entry.recipe_hash,
  };
  return runTrial(
    RunDir.at(runDir, io.err),
    compiled.plan,
    compiled.plan.trials[entry.index],
    compiled.recipes[entry.index],
    invocation,
    io,
    { quiet: o.quiet, prefix: o.prefix, resume: partial, force: o.force },
  );
}

/**
 * `sweep --prepare`: each distinct cacheable stage of a locked sweep (the fisher masks) run once, each by
 * walking one trial's plan up to it, filling the stage cache the trials then read.
 */
async function prepareShared(lockFile: string, io: Io, quiet?: boolean): Promise<number> {
  const lock = readLock(lockFile);
  const checked = checkedPlan(lock, lockFile, io);
  if (!checked) return 1;
  const { plan, recipes } = checked;
  const seen = new Set<string>();
  for (const t of lock.trials) {
    const trial = plan.trials[t.index];
    const cache = new StageCache(recipes[t.index].runtime.cache_dir);
    for (const stage of plan.stages.filter((s) => CACHED_STAGES.has(s.kind) && s.trials.includes(t.index))) {
      if (seen.has(stage.id)) continue;
      seen.add(stage.id);
      if (cache.has(stage.kind, stage.hash)) continue;
      const scratch = RunDir.at(
        path.join(path.dirname(path.resolve(lockFile)), 'prepare', stage.hash.slice(0, 12)),
        io.err,
      );
      try {
        await executeTrial(
          plan,
          trial,
          recipes[t.index],
          scratch,
          {
            log: (l) => !quiet && io.err(`[${stage.kind} ${stage.hash.slice(0, 12)}] ${l}`),
            stage: () => ({ tick() {}, end() {} }),
          },
          { until: stage.kind },
        );
      } finally {
        scratch.unlock();
      }
    }
  }
  const kinds = [...new Set(plan.stages.filter((s) => seen.has(s.id)).map((s) => s.kind))].join(', ') || 'fisher';
  io.err(`prepared ${seen.size} shared ${kinds} stage${seen.size === 1 ? '' : 's'}`);
  return 0;
}

/** One shell word, whatever the text holds: single quotes, with each embedded quote closed, escaped and reopened. */
export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Every value from the sweep goes into the script as a single-quoted word, and each --wrap command is quoted
 * as a whole, so nothing in a path or name is expanded when the script is submitted or when the job runs.
 */
function slurmScript(lock: SweepLock, dir: string): string {
  const lockPath = shellQuote(path.resolve(dir, LOCK_FILE));
  const prepare = shellQuote(`childtune sweep --prepare ${lockPath}`);
  // $SLURM_ARRAY_TASK_ID stays literal here and is expanded by the job's shell, which Slurm sets it for.
  const trial = shellQuote(`childtune run --trial "$SLURM_ARRAY_TASK_ID" ${lockPath}`);
  return `#!/bin/bash
# Slurm submission for the childtune sweep in ${JSON.stringify(dir)} (${lock.trials.length} trials).
# Submit with: bash ${JSON.stringify(path.join(dir, 'sweep.slurm.sh'))}
# The shared stages (fisher masks) run once first; the array job starts when they succeed. A task that is
# requeued or killed resumes from its last checkpoint when it runs again (the run lock is taken over).
set -euo pipefail
prep=$(sbatch --parsable --job-name=childtune-prepare --wrap=${prepare})
sbatch --dependency=afterok:"$prep" --array=0-${lock.trials.length - 1} --job-name=childtune-trial --requeue --wrap=${trial}
`;
}

/** Kubernetes Job names are DNS-1123 labels; an Indexed Job's pods are named `<job>-<index>`, so leave room for that. */
const K8S_NAME_LENGTH = 52;

/**
 * The name of one of a sweep's Jobs (`suffix`: prepare, trials): its directory name in lowercase ASCII (accents dropped, other characters as
 * '-'), cut to fit, a hash of the sweep directory's full path, so that two sweeps never share Job names
 * (a long name would otherwise lose the timestamp that tells them apart).
 */
export function k8sName(dir: string, suffix: string): string {
  const hash = sha256(path.resolve(dir)).slice(0, 8);
  const ascii = path
    .basename(dir)
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, K8S_NAME_LENGTH - hash.length - suffix.length - 2)
    .replace(/^-+|-+$/g, '');
  return [ascii || 'sweep', hash, suffix].join('-');
}

function k8sManifest(lock: SweepLock, dir: string): string {
  const lockPath = path.resolve(dir, LOCK_FILE);
  const job = (suffix: string, extra: string, command: string) => `apiVersion: batch/v1
kind: Job
metadata:
  name: ${k8sName(dir, suffix)}
spec:
${extra}  template:
    spec:
      restartPolicy: Never
      containers:
        - name: childtune
          image: childtune:latest  # an image with this repository installed
          command: ["sh", "-c", ${JSON.stringify(command)}]
          volumeMounts: [{ name: work, mountPath: ${JSON.stringify(path.dirname(lockPath))} }]
      volumes:
        - name: work
          persistentVolumeClaim: { claimName: childtune-work }  # shared storage holding the sweep directory
`;
  return `# Kubernetes manifests for the childtune sweep in ${JSON.stringify(dir)} (${lock.trials.length} trials).
# The first Job runs the shared fisher stages once; the Indexed Job runs one trial per index. Apply the
# first, wait for it (kubectl wait --for=condition=complete job/${k8sName(dir, 'prepare')}), then apply the second.
${job('prepare', '  backoffLimit: 2\n', `childtune sweep --prepare ${shellQuote(lockPath)}`)}---
${job('trials', `  completionMode: Indexed\n  completions: ${lock.trials.length}\n  parallelism: ${lock.trials.length}\n  backoffLimit: ${lock.trials.length}\n`, `childtune run --trial "$JOB_COMPLETION_INDEX" ${shellQuote(lockPath)}`)}`;
}
