import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cli, GLUE, REPO, tmpProject, write } from './helpers.js';

export const BIN = path.join(REPO, 'bin', 'childtune.js');

/**
 * The smallest real run: BERT-tiny shapes with a generated 300-token vocabulary, 16 training and 16 dev rows
 * of RTE, sequences of 16, two steps of 8 with a checkpoint after the first, a Child-Tuning-D mask, one thread.
 */
export async function smallProject(extra = ''): Promise<{ dir: string; recipe: string }> {
  const dir = tmpProject();
  const made = await cli(['model', 'init', '--size', 'tiny', '--out', path.join(dir, 'model')]);
  assert.equal(made.code, 0, made.err);
  const rows = fs.readFileSync(path.join(GLUE, 'RTE', 'train.tsv'), 'utf8').split('\n');
  write(dir, 'data/train.tsv', rows.slice(0, 17).join('\n') + '\n');
  write(dir, 'data/dev.tsv', [rows[0], ...rows.slice(17, 33)].join('\n') + '\n');
  const recipe = write(
    dir,
    'r.yaml',
    `version: 1
model: {path: ./model, max_seq_length: 16}
dataset: {task: glue/rte, dir: ./data}
strategy: {kind: child-tuning-d, reserve_p: 0.3, fisher: {batch_size: 8}}
training: {epochs: 1, batch_size: 8, log_every: 1, checkpoint_every: 1}
evaluation: {batch_size: 64}
runtime: {threads: 1}
${extra}`,
  );
  return { dir, recipe };
}

/** Runs the CLI in a child process (so it can be killed), with extra environment. */
export function spawnCli(args: string[], env: Record<string, string> = {}, cwd?: string): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    cwd,
    timeout: 120_000,
  });
}

const dropKeys = (o: Record<string, unknown>, keys: string[]) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

/** Everything a run produced that must be bit-identical whatever happened on the way (timings excepted). */
export function outcome(dir: string) {
  const read = (f: string) => fs.readFileSync(path.join(dir, f));
  const results = JSON.parse(read('results.json').toString());
  return {
    results: dropKeys(results, ['durations_s', 'resumed_from_step']),
    metrics: read('metrics.jsonl')
      .toString()
      .trim()
      .split('\n')
      .map((l) => dropKeys(JSON.parse(l), ['examples_per_s'])),
    // Every weight file the saved model has: model.safetensors and a strategy's own (PEFT's, AdapterHub's).
    model: (fs.readdirSync(path.join(dir, 'model'), { recursive: true }) as string[])
      .filter((f) => f.endsWith('.safetensors'))
      .sort()
      .map((f) => [f, read(path.join('model', f)).toString('base64')]),
    childMask: fs.existsSync(path.join(dir, 'child-mask.bin')) ? read('child-mask.bin').toString('base64') : null,
    childIndex: fs.existsSync(path.join(dir, 'child-mask.json')) ? read('child-mask.json').toString() : null,
    maskStats: read('mask-stats.json').toString(),
    devPredictions: read(path.join('predictions', 'dev.tsv')).toString(),
  };
}

/** Files a crash may leave behind and a restart must have removed. */
export function temporaries(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.tmp-\d+$/.test(f));
}

/** No stack trace and no "looks like a bug" in what a user sees. */
export function assertClean(err: string) {
  assert.doesNotMatch(err, /\n\s+at .+:\d+:\d+\)?/, 'no stack trace');
  assert.doesNotMatch(err, /looks like a bug/);
}
