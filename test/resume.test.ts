import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Rng } from '../src/engine/rng.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { readCheckpoint } from '../src/run/checkpoint.js';
import { prepareSplit } from '../src/run/data.js';
import { RunError } from '../src/run/errors.js';
import {
  cli,
  FIXTURES,
  GLUE,
  microModel,
  runUntilKilled,
  tinyModelRecipe,
  tmpProject,
  writeMicroCheckpoint,
} from './helpers.js';
import { metricsOf, modelBytes, resultsOf } from './strategy-checks.js';

test('a run killed with SIGKILL at a random step resumes to exactly the losses and metrics of an uninterrupted run', async (t) => {
  const recipe = await tinyModelRecipe(`dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: 48, seed: 0}
strategy: {kind: child-tuning-f, reserve_p: 0.5}
training: {epochs: 3, batch_size: 8, log_every: 1, checkpoint_every: 2}
evaluation: {batch_size: 64}
`);
  const whole = await cli(['run', recipe, '--json', '--allow-path', path.dirname(GLUE)]);
  assert.equal(whole.code, 0, whole.err);
  const reference = JSON.parse(whole.out)[0].dir;

  const killAt = 2 * (1 + new Rng(Date.now()).int(6));
  const runDir = await runUntilKilled(recipe, killAt, ['--allow-path', path.dirname(GLUE)]);

  // The dead process's lock is taken over with a log line, no manual step; a changed recipe is still refused.
  assert.ok(fs.existsSync(path.join(runDir, 'run.lock')), 'SIGKILL leaves the lock');
  const changed = await cli([
    'run',
    recipe,
    '--resume',
    runDir,
    '--set',
    'training.optimizer.lr=0.001',
    '--allow-path',
    path.dirname(GLUE),
  ]);
  assert.equal(changed.code, 1);
  assert.match(changed.err, /lock: took over .*run\.lock from process \d+/);
  assert.match(changed.err, /run-defining fields changed: training\.optimizer\.lr/);
  const again = await cli(['run', '--resume', runDir]);
  assert.equal(again.code, 0, again.err);
  const from = /resume: continuing from step (\d+)/.exec(again.err);
  assert.ok(from, again.err);
  assert.ok(!fs.existsSync(path.join(runDir, 'run.lock')), 'the finished resume releases the lock');

  // Where a difference shows, which step the kill followed and which step the resume took up name the case; the
  // step log first, so the first step that differs is in the failure.
  t.diagnostic(`killed once step ${killAt} was checkpointed; resumed from step ${from[1]}`);
  assert.deepEqual(metricsOf(runDir), metricsOf(reference));
  assert.deepEqual(resultsOf(runDir), resultsOf(reference));
  assert.deepEqual(modelBytes(runDir), modelBytes(reference));
  assert.equal((await cli(['run', '--resume', runDir])).code, 0, 'resuming a finished run is a no-op');
});

test('a truncated or foreign checkpoint is one clear error naming the file, never a stack trace', () => {
  const dir = tmpProject();
  const model = microModel();
  const rel = writeMicroCheckpoint(dir, model, { step: 4 });
  assert.equal(readCheckpoint(dir, model.specs, () => {})!.meta.loop.step, 4);
  const other = microModel({ labels: 2 });
  assert.throws(
    () => readCheckpoint(dir, other.specs, () => {}),
    (e: unknown) => e instanceof RunError && /lacks .*classifier|wrong size/.test((e as Error).message),
  );
  const file = path.join(dir, rel, 'state.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 100);
  assert.throws(
    () => readCheckpoint(dir, model.specs, () => {}),
    (e: unknown) =>
      e instanceof RunError &&
      /state\.safetensors.*truncated mid-tensor/.test((e as Error).message) &&
      /without --resume/.test((e as { hint?: string }).hint ?? ''),
  );
});

test('the trials of a sweep share one tokenizer and one tokenization per split', () => {
  const dir = path.join(FIXTURES, 'bert-tiny-random');
  const tokenizer = loadTokenizer(dir);
  assert.equal(loadTokenizer(dir), tokenizer);
  const dataset = {
    task: 'glue/rte',
    dir: path.join(GLUE, 'RTE'),
    train_split: 'train',
    eval_split: 'dev',
    on_bad_row: 'error',
    subsample: { size: 16, seed: 0, stratified: true },
  } as never;
  const a = prepareSplit(dataset, 'train', tokenizer, 32, true);
  assert.equal(prepareSplit(structuredClone(dataset), 'train', tokenizer, 32, true), a);
  assert.notEqual(prepareSplit(dataset, 'train', tokenizer, 64, true), a);
});
