import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { compilePlan } from '../src/plan/compiler.js';
import { CACHED_STAGES, STAGE_KINDS, type StageKind } from '../src/plan/stages.js';
import { loadRecipe } from '../src/recipe/index.js';
import { RunError } from '../src/run/errors.js';
import { executeTrial } from '../src/run/executor.js';
import { RunDir } from '../src/run/rundir.js';
import { STAGE_RUNNERS } from '../src/run/stages/index.js';
import { runTrial } from '../src/run/trial.js';
import { failedStageOf, type StageRunner, type StageRunners } from '../src/run/walk.js';
import { smallProject } from './integrity-helpers.js';

const quiet = { log() {}, stage: () => ({ tick() {}, end() {} }) };

/** A project whose plan has every stage kind: a subsample, a Child-Tuning-D fisher stage, a domain transfer. */
async function everyKindProject() {
  const { dir, recipe } = await smallProject(
    'transfer: {domain: [{name: again, dataset: {task: glue/rte, dir: ./data}}]}\n',
  );
  const text = fs
    .readFileSync(recipe, 'utf8')
    .replace(
      'dataset: {task: glue/rte, dir: ./data}',
      'dataset: {task: glue/rte, dir: ./data, subsample: {size: 12, seed: 0}}',
    );
  fs.writeFileSync(recipe, text);
  const loaded = loadRecipe(recipe, { sets: [], allowedRoots: [] });
  const { plan, recipes, diagnostics } = compilePlan(loaded, recipe);
  assert.ok(plan, JSON.stringify(diagnostics));
  assert.deepEqual(
    [...new Set(plan.stages.map((s) => s.kind))].sort(),
    [...STAGE_KINDS].sort(),
    'the project plans every kind of stage',
  );
  return { dir, plan, recipe: recipes[0], trial: plan.trials[0] };
}

/** The registry with each runner wrapped to record the kinds it ran, in order; `override` replaces some. */
function recording(override: Partial<Record<StageKind, StageRunner>> = {}) {
  const ran: StageKind[] = [];
  const runners = Object.fromEntries(
    STAGE_KINDS.map((kind) => {
      const base = override[kind] ?? STAGE_RUNNERS[kind];
      return [
        kind,
        { ...base, run: (stage, deps, ctx) => (ran.push(kind), base.run(stage, deps, ctx)) } satisfies StageRunner,
      ];
    }),
  ) as unknown as StageRunners;
  return { ran, runners };
}

const scratch = () => RunDir.at(fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-walk-')));

describe('the executor walks the plan', () => {
  test('the runner registry has exactly one runner per stage kind; exactly the cached kinds have a cache format', () => {
    assert.deepEqual(Object.keys(STAGE_RUNNERS).sort(), [...STAGE_KINDS].sort());
    for (const kind of STAGE_KINDS) assert.equal(!!STAGE_RUNNERS[kind].cache, CACHED_STAGES.has(kind), kind);
  });

  test("a full walk runs every stage of the trial once, dependencies first; durations are the walk's", async () => {
    const { plan, recipe, trial } = await everyKindProject();
    const { ran, runners } = recording();
    const run = scratch();
    try {
      const results = await executeTrial(plan, trial, recipe, run, quiet, { runners });
      assert.deepEqual(ran, [
        'load-model',
        'load-dataset',
        'subsample',
        'tokenize',
        'load-dataset',
        'tokenize',
        'fisher',
        'train',
        'evaluate',
        'transfer-eval',
        'report',
      ]);
      assert.ok(results);
      assert.deepEqual(Object.keys(results.durations_s).sort(), [...new Set(ran)].filter((k) => k !== 'report').sort());
      assert.deepEqual(Object.keys(results.transfer), ['domain/again']);
      assert.equal(JSON.parse(fs.readFileSync(run.path('results.json'), 'utf8')).version, 1);
    } finally {
      run.unlock();
    }
  });

  test("--prepare's walk stops after the fisher stage (no evaluation data, no training); a second walk reads the stage through the cache", async () => {
    const { plan, recipe, trial } = await everyKindProject();
    const first = recording();
    const run = scratch();
    try {
      assert.equal(
        await executeTrial(plan, trial, recipe, run, quiet, { until: 'fisher', runners: first.runners }),
        null,
      );
      assert.deepEqual(first.ran, ['load-model', 'load-dataset', 'subsample', 'tokenize', 'fisher']);
      const hash = plan.stages.find((s) => s.id === trial.fisher)!.hash;
      assert.ok(fs.existsSync(path.join(recipe.runtime.cache_dir, 'fisher', hash, 'done.json')));
      // The second walk must not compute the stage: its runner would fail; the cache format reads it back.
      const logs: string[] = [];
      const second = recording({
        fisher: { ...STAGE_RUNNERS.fisher, run: () => assert.fail('a cached fisher stage was computed again') },
      });
      await executeTrial(
        plan,
        trial,
        recipe,
        run,
        { ...quiet, log: (l) => logs.push(l) },
        { until: 'fisher', runners: second.runners },
      );
      assert.ok(
        logs.some((l) => l.startsWith(`fisher: cached (${hash.slice(0, 12)})`)),
        logs.join('\n'),
      );
      assert.deepEqual(second.ran, ['load-model', 'load-dataset', 'subsample', 'tokenize']);
    } finally {
      run.unlock();
    }
  });

  test("error.json names the stage whose runner failed, for every kind; an error before the first stage is setup's", async () => {
    const { dir, plan, recipe, trial } = await everyKindProject();
    const io = { out() {}, err() {} };
    const invocation = { recipe: 'r.yaml', set: [], allow_path: [], trial: 0, recipe_hash: trial.recipeHash };
    for (const [i, kind] of STAGE_KINDS.entries()) {
      // A foreign error (no stage field) and one of ours, alternately: both are attributed by the walk.
      const failure = i % 2 ? new Error(`boom in ${kind}`) : new RunError(`boom in ${kind}`);
      const { runners } = recording({
        [kind]: {
          run: () => {
            throw failure;
          },
        },
      });
      const run = RunDir.at(path.join(dir, `fail-${kind}`));
      await assert.rejects(
        runTrial(run, plan, trial, recipe, invocation, io, { quiet: true, runners }),
        (e) => e === failure,
      );
      assert.equal(failedStageOf(failure), kind);
      const error = JSON.parse(fs.readFileSync(path.join(dir, `fail-${kind}`, 'error.json'), 'utf8'));
      assert.equal(error.stage, kind);
      assert.equal(error.message, `boom in ${kind}`);
      assert.ok(!fs.existsSync(path.join(dir, `fail-${kind}`, 'results.json')));
    }
    const tooLate = RunDir.at(path.join(dir, 'setup'));
    const changed = { ...recipe, runtime: { ...recipe.runtime, backend: 'no-such-backend' as 'wasm' } };
    await assert.rejects(runTrial(tooLate, plan, trial, changed, invocation, io, { quiet: true }));
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'setup', 'error.json'), 'utf8')).stage, 'setup');
  });
});

test('the data stages of a process share one read and one subsample per stage while the file is unchanged', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-walk-data-'));
  const file = path.join(dir, 'train.tsv');
  fs.writeFileSync(file, 'sentence\tlabel\na\t0\nb\t1\nc\t0\nd\t1\n');
  const dataset = {
    task: 'custom',
    files: { train: file },
    text_fields: ['sentence'],
    label_field: 'label',
    on_bad_row: 'error',
  };
  const load = { hash: 'load-1', source: { dataset, split: 'train' } } as never;
  const subsample = { hash: 'sub-1', inputs: { size: 2, seed: 0, stratified: false } } as never;
  const run = (runner: StageRunner, stage: never, deps: unknown[] = []) => runner.run(stage, deps, {} as never);
  const first = await run(STAGE_RUNNERS['load-dataset'], load);
  assert.equal(await run(STAGE_RUNNERS['load-dataset'], load), first, 'read once');
  const picked = await run(STAGE_RUNNERS.subsample, subsample, [first]);
  assert.equal(await run(STAGE_RUNNERS.subsample, subsample, [first]), picked, 'subsampled once');
  fs.writeFileSync(file, 'sentence\tlabel\na\t0\nb\t1\nc\t0\nd\t1\ne\t0\n');
  const again = await run(STAGE_RUNNERS['load-dataset'], load);
  assert.notEqual(again, first, 'a changed file is read again');
  assert.equal((again as { examples: unknown[] }).examples.length, 5);
  assert.notEqual(await run(STAGE_RUNNERS.subsample, subsample, [again]), picked, 'and its subsample drawn again');
});
