import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { expandSweep } from '../src/plan/sweep.js';
import { loadRecipe } from '../src/recipe/index.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import type { Row } from '../src/run/report/group.js';
import { collectRuns } from '../src/run/report/collect.js';
import { groupRuns } from '../src/run/report/group.js';
import { baselineRow, differences } from '../src/run/report/significance.js';
import { cli, FIXTURES, GLUE, tmpProject, write } from './helpers.js';
import { fakeRun } from './report-fixtures.js';

const MODEL = path.join(FIXTURES, 'bert-tiny-random');

/** A sweep of vanilla and D, each at its own learning rate (D at two), written once. */
const SWEEP = `sweep:
  grid:
    strategy: [{kind: vanilla}, {kind: child-tuning-d, reserve_p: 0.3}]
  per_strategy:
    vanilla: {training.optimizer.lr: [2.0e-5]}
    child-tuning-d: {training.optimizer.lr: [4.0e-5, 5.0e-5]}
  seeds: [1, 2]
`;

function recipeWith(sweep: string): string {
  const dir = tmpProject();
  return write(
    dir,
    'r.yaml',
    `version: 1
model: {path: ${MODEL}, max_seq_length: 16}
dataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}}
${sweep}`,
  );
}

describe('per-strategy settings in a sweep', () => {
  test('each strategy gets its own settings, as an axis of its own; the plan lists those trials', async () => {
    const sweep = { ...(loadRecipe(recipeWith(SWEEP), { allowedRoots: [FIXTURES] }).recipe!.sweep as object) };
    const trials = expandSweep(sweep as Recipe['sweep'], 'vanilla');
    assert.deepEqual(
      trials.map((t) => [
        (t.overrides.strategy as { kind: string }).kind,
        t.overrides['training.optimizer.lr'],
        t.overrides['training.seed'],
        t.strategySettings.join(),
      ]),
      [
        ['vanilla', 2e-5, 1, 'training.optimizer.lr'],
        ['vanilla', 2e-5, 2, 'training.optimizer.lr'],
        ['child-tuning-d', 4e-5, 1, 'training.optimizer.lr'],
        ['child-tuning-d', 4e-5, 2, 'training.optimizer.lr'],
        ['child-tuning-d', 5e-5, 1, 'training.optimizer.lr'],
        ['child-tuning-d', 5e-5, 2, 'training.optimizer.lr'],
      ],
    );
    const plan = await cli(['plan', recipeWith(SWEEP), '--json', '--allow-path', FIXTURES]);
    assert.equal(plan.code, 0, plan.err);
    const planned = JSON.parse(plan.out).trials as {
      overrides: Record<string, unknown>;
      strategySettings?: string[];
    }[];
    assert.deepEqual(
      planned.map((t) => t.overrides['training.optimizer.lr']),
      [2e-5, 2e-5, 4e-5, 4e-5, 5e-5, 5e-5],
    );
    assert.ok(planned.every((t) => t.strategySettings?.join() === 'training.optimizer.lr'));
  });

  test('a kind no trial has, an unknown kind, and a path set twice are reported', () => {
    const messages = (sweep: string) =>
      loadRecipe(recipeWith(sweep), { allowedRoots: [FIXTURES] })
        .diagnostics.filter((d) => d.pointer.startsWith('/sweep'))
        .map((d) => `${d.code} ${d.severity} ${d.message}`);
    const m = messages(`sweep:
  grid:
    strategy.kind: [vanilla, child-tuning-f]
    training.optimizer.lr: [1.0e-5]
  per_strategy:
    lora: {training.epochs: [1]}
    vanila: {training.epochs: [1]}
    child-tuning-f: {training.optimizer.lr: [3.0e-5], strategy.kind: [vanilla]}
`);
    assert.ok(
      m.includes(
        "CT0306 warning sweep.per_strategy.lora applies to no trial: the sweep's strategies are vanilla, child-tuning-f",
      ),
      m.join('\n'),
    );
    assert.ok(m.includes('CT0105 error sweep.per_strategy.vanila is not a strategy kind'), m.join('\n'));
    assert.ok(
      m.some((x) =>
        x.startsWith(
          "CT0306 error sweep path 'training.optimizer.lr' is set both by sweep.per_strategy.child-tuning-f",
        ),
      ),
      m.join('\n'),
    );
    assert.ok(
      m.some((x) => x.startsWith('CT0306 error sweep.per_strategy.child-tuning-f cannot set strategy.kind')),
      m.join('\n'),
    );
  });

  test('the report compares each strategy at its own learning rate with the baseline at its own', () => {
    const root = tmpProject();
    for (const seed of [1, 2, 3]) {
      const common = { task: 'glue/rte', seed, strategySettings: ['training.optimizer.lr'] };
      fakeRun(path.join(root, `v${seed}`), {
        ...common,
        strategy: 'vanilla',
        score: 0.6 + seed / 100,
        optimizerLr: 2e-5,
        overrides: { strategy: { kind: 'vanilla' }, 'training.optimizer.lr': 2e-5, 'training.seed': seed },
      });
      fakeRun(path.join(root, `d${seed}`), {
        ...common,
        strategy: 'child-tuning-d',
        score: 0.63 + seed / 90,
        optimizerLr: 4e-5,
        overrides: {
          strategy: { kind: 'child-tuning-d', reserve_p: 0.3 },
          'training.optimizer.lr': 4e-5,
          'training.seed': seed,
        },
      });
    }
    // The report's own grouping and tests, on the runs as collected (the figures are not this test's concern).
    const significance = differences(groupRuns(collectRuns([root])), 'vanilla');
    const [d] = significance;
    assert.deepEqual(
      [d.row, d.baseline, d.method, d.n],
      ['child-tuning-d (p=0.3) training.optimizer.lr=0.00004', 'vanilla training.optimizer.lr=0.00002', 'paired t', 3],
    );
    assert.match(d.lr_note ?? '', /the learning rate differs from the baseline's \(0\.00004 vs 0\.00002\)/);
  });

  test('with a baseline at several own settings, the row pairs with the one at its own, else with none', () => {
    const row = (strategy: string, lr: string): Row => ({
      key: `${strategy}${lr}`,
      label: `${strategy} lr=${lr}`,
      strategy,
      strategyLabel: strategy,
      model: 'm',
      settings: { 'training.optimizer.lr': lr, 'training.epochs': '3' },
      own: ['training.optimizer.lr'],
    });
    const rows = [
      row('vanilla', '1e-5'),
      row('vanilla', '2e-5'),
      row('child-tuning-d', '2e-5'),
      row('child-tuning-d', '4e-5'),
    ];
    assert.equal(baselineRow(rows, rows[2], 'vanilla'), rows[1]);
    assert.equal(baselineRow(rows, rows[3], 'vanilla'), undefined);
    assert.equal(baselineRow(rows.slice(1), rows[3], 'vanilla'), rows[1]);
    const otherEpochs = { ...rows[3], settings: { ...rows[3].settings, 'training.epochs': '5' } };
    assert.equal(baselineRow(rows.slice(1), otherEpochs, 'vanilla'), undefined, 'a shared setting still has to match');
  });
});
