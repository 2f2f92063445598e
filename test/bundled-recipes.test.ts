import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { cli, glueWithShortDev, REPO, tinyModel, tmpProject } from './helpers.js';

/**
 * The comparison recipes (issue 16): recipes/paper/baselines (the paper's comparison table) and recipes/delta
 * (Child-Tuning against the delta-tuning methods). Each full recipe plans every strategy of its grid over 10 seeds;
 * a small variant (one seed, 16 examples, one epoch, the tiny model) runs every strategy to a finite dev metric (the
 * RTE recipes, which hold every kind, with a domain transfer evaluation too), and `childtune report` puts a
 * directory's runs in one table.
 */
const DIRS = ['recipes/paper/baselines', 'recipes/delta'];
const recipes = DIRS.flatMap((d) =>
  fs
    .readdirSync(path.join(REPO, d))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `${d}/${f}`),
).sort();
// The real GLUE training files; dev files cut short: scoring every trial on a whole dev set took a quarter of the time.
const data = glueWithShortDev(tmpProject(), ['CoLA', 'MRPC', 'RTE', 'STS-B']);
const allow = ['--allow-path', data];

/** The grid's strategies, as `kind` plus the kind Child-Tuning runs inside it, if any. */
function gridOf(file: string): string[] {
  const grid = parse(fs.readFileSync(path.join(REPO, file), 'utf8')).sweep.grid.strategy as {
    kind: string;
    child_tuning?: { kind: string };
  }[];
  return grid.map((s) => (s.child_tuning ? `${s.kind}+${s.child_tuning.kind}` : s.kind));
}

describe('bundled comparison recipes', () => {
  let project: string;
  before(async () => {
    project = tmpProject();
    process.env.CHILDTUNE_MODEL = await tinyModel(path.join(project, 'model'));
    process.env.CHILDTUNE_DATA = data;
  });

  test('cover the paper table on CoLA, RTE, MRPC and STS-B with all six baselines, and the delta methods', () => {
    assert.deepEqual(
      recipes.filter((r) => r.includes('/baselines/')).map((r) => path.basename(r)),
      ['cola.yaml', 'mrpc.yaml', 'rte.yaml', 'sts-b.yaml'],
    );
    for (const r of recipes.filter((r) => r.includes('/baselines/')))
      assert.deepEqual(gridOf(r), [
        'vanilla',
        'weight-decay-to-pretrained',
        'top-k-layers',
        'mixout',
        'recadam',
        'r3f',
        'child-tuning-f',
        'child-tuning-d',
      ]);
    const delta = new Set(recipes.filter((r) => r.includes('/delta/')).flatMap((r) => gridOf(r)));
    for (const kind of [
      'child-tuning-d',
      'bitfit',
      'lora',
      'adapter',
      'prefix-tuning',
      'prompt-tuning',
      'diff-pruning',
      'mask-tuning',
    ])
      assert.ok(delta.has(kind), `recipes/delta has ${kind}`);
  });

  for (const recipe of recipes) {
    test(`${recipe}: plans its strategies x 10 seeds; a small variant runs each`, async () => {
      const file = path.join(REPO, recipe);
      const grid = gridOf(recipe);
      const transfer = parse(fs.readFileSync(file, 'utf8')).dataset.task === 'glue/rte';
      const plan = await cli(['plan', file, '--json', ...allow]);
      assert.equal(plan.code, 0, plan.err);
      assert.equal(JSON.parse(plan.out).trials.length, grid.length * 10);
      const runs = path.join(
        project,
        'runs',
        path.basename(recipe, '.yaml') + '-' + path.basename(path.dirname(recipe)),
      );
      const small = [
        // One thread: at this size a worker's start-up costs more than it shares (the threaded paths have their own tests).
        ...[
          'sweep.seeds=[1]',
          'training.epochs=1',
          'training.batch_size=8',
          'model.max_seq_length=32',
          'runtime.threads=1',
        ],
        'dataset.subsample={size: 16, seed: 0, stratified: false}',
        ...(transfer ? [`transfer.domain=[{name: rte-dev, dataset: {task: glue/rte, dir: ${data}/glue/RTE}}]`] : []),
        ...[`runtime.output_dir=${runs}`, `runtime.cache_dir=${path.join(project, 'cache')}`],
      ].flatMap((s) => ['--set', s]);
      const r = await cli(['sweep', file, ...small, '--quiet', '--json', ...allow]);
      assert.equal(r.code, 0, r.err);
      const trials = JSON.parse(r.out) as {
        strategy: string;
        child_tuning?: { kind: string };
        metrics: Record<string, number>;
        transfer: Record<string, Record<string, number>>;
        trainable_share: number;
      }[];
      assert.deepEqual(
        trials.map((t) => (t.child_tuning ? `${t.strategy}+${t.child_tuning.kind}` : t.strategy)),
        grid,
      );
      for (const t of trials) {
        assert.ok(Number.isFinite(Object.values(t.metrics)[0]), `${t.strategy}: a finite dev metric`);
        assert.ok(
          t.trainable_share > 0 && t.trainable_share <= 1,
          `${t.strategy}: trainable share ${t.trainable_share}`,
        );
        if (transfer)
          assert.ok(
            Number.isFinite(Object.values(t.transfer['domain/rte-dev'])[0]),
            `${t.strategy}: transfer evaluation`,
          );
      }
      const report = await cli(['report', runs, '--format', 'json']);
      assert.equal(report.code, 0, report.err);
      const rows = JSON.parse(report.out).rows as { kind: string; trainable: number | null }[];
      assert.deepEqual(
        [...new Set(rows.map((row) => row.kind))].sort(),
        [...new Set(trials.map((t) => t.strategy))].sort(),
      );
      for (const row of rows) assert.ok(row.trainable !== null, `${row.kind}: the report shows its trainable share`);
    });
  }
});
