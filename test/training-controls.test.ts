import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseSafetensors } from '../src/engine/safetensors.js';
import { learningRate } from '../src/engine/optimizer.js';
import { Rng } from '../src/engine/rng.js';
import { scalarsOf } from '../src/run/tensorboard.js';
import { readCheckpoint } from '../src/run/checkpoint.js';
import { cli, GLUE, killAndResume, microModel, tinyModel, tmpProject, write, writeMicroCheckpoint } from './helpers.js';
import { lossesOf, metricsLog, metricsOf, modelBytes } from './strategy-checks.js';

/**
 * One project for every test: a random BERT-tiny, and RTE rows in a directory of their own: 24 training rows, and
 * dev rows split into a dev and a test file (labelled both), so the test split is real data a run can score.
 */
let project: Promise<string> | undefined;
const projectDir = () =>
  (project ??= (async () => {
    const dir = tmpProject();
    await tinyModel(path.join(dir, 'model'));
    rteFiles(path.join(dir, 'rte'));
    return dir;
  })());

function rteFiles(dir: string) {
  const [header, ...train] = fs
    .readFileSync(path.join(GLUE, 'RTE', 'train.tsv'), 'utf8')
    .trim()
    .split('\n');
  const [, ...dev] = fs
    .readFileSync(path.join(GLUE, 'RTE', 'dev.tsv'), 'utf8')
    .trim()
    .split('\n');
  const file = (name: string, rows: string[]) => write(dir, name, [header, ...rows].join('\n') + '\n');
  file('train.tsv', train.slice(0, 24));
  file('dev.tsv', dev.slice(0, 48));
  file('test.tsv', dev.slice(48, 80));
}

let recipes = 0;
/** A recipe in the shared project; `body` holds the strategy, training and evaluation blocks. */
async function recipeWith(body: string): Promise<string> {
  return write(
    await projectDir(),
    `r${recipes++}.yaml`,
    `version: 1
model: {path: ./model, max_seq_length: 32}
dataset: {task: glue/rte, dir: ./rte, files: {test: test.tsv}}
${body}`,
  );
}

const results = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
const weights = (dir: string) => {
  const file = path.join(dir, 'model', 'model.safetensors');
  return parseSafetensors(fs.readFileSync(file), file);
};
const runOf = async (recipe: string, ...args: string[]) => {
  const r = await cli(['run', recipe, '--json', ...args]);
  assert.equal(r.code, 0, r.err);
  return { dir: JSON.parse(r.out)[0].dir as string, err: r.err };
};

test('training.accumulate 2 of batch 4 trains as batch 8: the same losses and weights (dropout off)', async () => {
  const body = (training: string) => `strategy: {kind: child-tuning-f, reserve_p: 0.5}
training: {epochs: 2, dropout: false, log_every: 1, optimizer: {lr: 0.001}, ${training}}
`;
  const eight = await runOf(await recipeWith(body('batch_size: 8')));
  const twice = await runOf(await recipeWith(body('batch_size: 4, accumulate: 2')));
  assert.equal(results(twice.dir).steps, 6, '24 examples in groups of 2 batches of 4: 3 optimizer steps an epoch');
  const [ofEight, ofTwice] = [lossesOf(eight.dir), lossesOf(twice.dir)];
  assert.equal(ofTwice.length, 6);
  ofEight.forEach((l, i) => assert.ok(Math.abs(l - ofTwice[i]) < 1e-5, `step ${i + 1}`));
  const [a, b] = [weights(eight.dir), weights(twice.dir)];
  let apart = 0;
  for (const [name, t] of a)
    for (let j = 0; j < t.data.length; j++) apart = Math.max(apart, Math.abs(t.data[j] - b.get(name)!.data[j]));
  assert.ok(apart < 1e-5, `batch 8 and 2 x 4 differ by ${apart}`);
});

test('evaluating every N steps with early stopping, a test split and max_steps: killed with SIGKILL, it resumes to the same results', async () => {
  // min_delta 1 is an improvement no accuracy can make after the first evaluation: it stops after 2 more.
  const recipe = await recipeWith(`strategy: {kind: child-tuning-f, reserve_p: 0.5}
training:
  {max_steps: 10, batch_size: 4, accumulate: 2, log_every: 1, checkpoint_every: 1, optimizer: {lr: 0.001}, schedule: {warmup_ratio: 0}}
evaluation: {every_steps: 2, checkpoint: best, early_stopping: {patience: 2, min_delta: 1}, splits: [dev, test]}
`);
  const plan = await cli(['plan', recipe]);
  assert.equal(plan.code, 0, plan.err);
  assert.match(plan.out, /24 examples, 10 steps \(training\.max_steps: 3\.33 epochs\), 2 batches accumulated per step/);
  assert.match(
    plan.out,
    /evaluations: at most 5 \(every 2 steps and after the last, early stopping after 2 without improvement\); also test/,
  );

  const reference = await runOf(recipe);
  const r = results(reference.dir);
  assert.equal(r.stopped_early_at_step, 6);
  assert.equal(r.steps, 6);
  assert.match(
    reference.err,
    /early stopping: no improvement of dev accuracy in 2 evaluations; stopped at step 6 of 10/,
  );
  assert.deepEqual(
    r.epochs.map((e: { step: number }) => e.step),
    [2, 4, 6],
  );
  // The kept evaluation is the best on dev (the first of equals), and its test scores are reported beside dev's.
  const scores = r.epochs.map((e: { metrics: { accuracy: number } }) => e.metrics.accuracy);
  const best = scores.indexOf(Math.max(...scores));
  assert.deepEqual(r.selected, {
    step: r.epochs[best].step,
    epoch: r.epochs[best].epoch,
    by: 'best',
    split: 'dev',
    metric: 'accuracy',
  });
  assert.deepEqual(r.metrics, r.epochs[best].metrics);
  assert.deepEqual(r.split_metrics, r.epochs[best].splits);
  assert.equal(typeof r.split_metrics.test.accuracy, 'number');
  // The learning rate decays over max_steps' 10 steps, not over the 3 epochs' 9.
  const logged = metricsLog(reference.dir);
  const lr = logged.find((e) => e.kind === 'step' && e.step === 6).lr;
  assert.equal(lr, learningRate(5, 10, 0.001, 0, 'linear'));
  const evals = logged.filter((e) => e.kind === 'eval');
  assert.deepEqual(
    evals.map((e) => [e.step, Object.keys(e.splits)]),
    [
      [2, ['test']],
      [4, ['test']],
      [6, ['test']],
    ],
  );

  // TensorBoard gets the test split's scalars beside eval's; the report a test column beside the task's.
  assert.deepEqual(Object.keys(scalarsOf(evals[0])), ['eval/accuracy', 'test/accuracy']);
  const report = await cli(['report', reference.dir]);
  assert.equal(report.code, 0, report.err);
  assert.match(report.out, /\| strategy \| glue\/rte \(accuracy\) \| glue\/rte \[test\] \(accuracy\) \|/);

  // Killed after a random checkpoint before the stop (evaluated and not), then resumed.
  const killAt = 1 + new Rng(Date.now()).int(5);
  const runDir = await killAndResume(recipe, killAt);

  const same = (dir: string) => {
    const { durations_s: _d, resumed_from_step: _r, ...rest } = results(dir);
    return rest;
  };
  assert.deepEqual(same(runDir), same(reference.dir));
  assert.deepEqual(metricsOf(runDir), metricsOf(reference.dir));
  assert.deepEqual(modelBytes(runDir), modelBytes(reference.dir));
});

test('a checkpoint taken before the first evaluation reads back its best score as -Infinity, not as null', () => {
  const dir = tmpProject();
  const model = microModel();
  writeMicroCheckpoint(dir, model, { step: 1, batch: 2, sinceImproved: 0 });
  const best = readCheckpoint(dir, model.specs, () => {})!.meta.loop.best;
  // With null, a first accuracy of 0.5 would be no improvement on early stopping's min_delta of 1 (0.5 > null + 1).
  assert.equal(best.score, -Infinity);
});

test('training controls that cannot work are refused with what to change', async () => {
  const check = async (body: string, args: string[] = []) => {
    const r = await cli(['plan', await recipeWith(`strategy: {kind: vanilla}\n${body}`), ...args]);
    assert.equal(r.code, 1, r.out);
    return r.err + r.out;
  };
  assert.match(
    await check('evaluation: {every_steps: 2, early_stopping: {patience: 2}}\n'),
    /CT0105.*evaluation\.early_stopping needs evaluation\.checkpoint: best[\s\S]*Add evaluation\.checkpoint: best/,
  );
  assert.match(
    await check('evaluation: {splits: [test]}\n'),
    /CT0105.*evaluation\.splits \[test\] lacks dataset\.eval_split 'dev'[\s\S]*splits: \[dev, test\]/,
  );
  assert.match(await check('evaluation: {splits: [dev, holdout]}\n'), /CT0307.*no file for split 'holdout'/);
  assert.match(
    await check('training: {batch_size: 8, accumulate: 4}\n'),
    /CT0106.*training\.accumulate is 4, but an epoch has only 3 batches of 8 \(24 training examples\)[\s\S]*accumulate: 3 or less/,
  );
  const both = await cli([
    'validate',
    await recipeWith('strategy: {kind: vanilla}\ntraining: {epochs: 2, max_steps: 5}\n'),
  ]);
  assert.equal(both.code, 0, both.err);
  assert.match(
    both.out + both.err,
    /warning.*training\.epochs \(2\) is ignored: training\.max_steps \(5\) sets the number of steps/,
  );
});
