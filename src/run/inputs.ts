import type { Plan, PlannedTrial } from '../plan/stages.js';
import { ARTIFACT_VERSIONS, checkVersion } from './artifacts.js';
import { RunError } from './errors.js';
import type { RunDir } from './rundir.js';

/** inputs.json: the content hashes of everything a run reads from outside its recipe, recorded at its start. */
export interface InputRecord {
  version: 1;
  /** 'model <dir>' or 'data <task> <split>' -> the content hashes the plan computed. */
  inputs: Record<string, unknown>;
  /** Changes accepted with --force on a resume. */
  forced: { at: string; changed: string[] }[];
}

/** The model and data identities of one trial, as the plan's load stages hashed them (by full content). */
export function trialInputs(plan: Plan, trial: PlannedTrial): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of plan.stages) {
    if (!s.trials.includes(trial.index)) continue;
    if (s.kind === 'load-model') out[`model ${s.label}`] = s.inputs;
    if (s.kind === 'load-dataset') out[`data ${s.label}`] = s.inputs.file;
    if (s.kind === 'tokenize') out.tokenizer = s.inputs.tokenizer;
  }
  return out;
}

const describe = (key: string, before: unknown, now: unknown) => {
  if (key.startsWith('model ')) {
    const [b, n] = [before as Record<string, string>, now as Record<string, string>];
    const parts = Object.keys({ ...b, ...n }).filter((k) => b?.[k] !== n?.[k]);
    return `the ${parts.join(' and ')} of ${key} changed`;
  }
  return `${key} changed`;
};

/**
 * Records the inputs on a run's first start; on a resume, refuses if any changed since (naming each), unless
 * `force`, which continues and notes the accepted change in inputs.json and the log.
 */
export function checkInputs(
  run: RunDir,
  now: Record<string, unknown>,
  resume: boolean,
  force: boolean,
  log: (line: string) => void,
) {
  if (!run.exists('inputs.json')) {
    run.writeJson('inputs.json', {
      version: ARTIFACT_VERSIONS['inputs.json'],
      inputs: now,
      forced: [],
    } satisfies InputRecord);
    return;
  }
  if (!resume) return;
  const record = run.readJson<InputRecord>('inputs.json');
  checkVersion(
    run.path('inputs.json'),
    'inputs.json',
    record as unknown as Record<string, unknown>,
    'Resume with the childtune that started the run, or start a new run.',
  );
  const keys = [...new Set([...Object.keys(record.inputs), ...Object.keys(now)])].sort();
  const changed = keys
    .filter((k) => JSON.stringify(record.inputs[k]) !== JSON.stringify(now[k]))
    .map((k) => describe(k, record.inputs[k], now[k]));
  if (!changed.length) return;
  if (!force)
    throw new RunError(
      `cannot resume ${run.dir}: ${changed.join('; ')} since the run started`,
      'Restore the original files, start a new run, or pass --force to continue on the changed inputs knowingly (the run then mixes both).',
      'resume',
    );
  log(`resume: --force: continuing although ${changed.join('; ')}`);
  run.writeJson('inputs.json', {
    version: ARTIFACT_VERSIONS['inputs.json'],
    inputs: now,
    forced: [...record.forced, { at: new Date().toISOString(), changed }],
  } satisfies InputRecord);
}
