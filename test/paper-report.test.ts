import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { cli, GLUE, tinyModel, tmpProject } from './helpers.js';

/**
 * Issue 28 on the bundled paper recipe, run small (one seed pair, 24 examples, one epoch, the tiny model): the sweep
 * says what to do next, each run records what it predicted, and `childtune report` gives the significance table
 * against vanilla with readable rows and the trainable column in every format.
 */
describe('paper/glue/rte, small, then report', () => {
  const project = tmpProject();
  const runs = path.join(project, 'runs');
  let sweep: Awaited<ReturnType<typeof cli>>;
  let dir: string;
  before(async () => {
    process.env.CHILDTUNE_MODEL = await tinyModel(path.join(project, 'model'));
    process.env.CHILDTUNE_DATA = path.dirname(GLUE);
    const small = [
      // One thread: a worker's start-up costs more than it shares at this size (the threaded paths have their own tests).
      ...[
        'sweep.seeds=[1, 2]',
        'training.epochs=1',
        'training.batch_size=8',
        'model.max_seq_length=32',
        'runtime.threads=1',
      ],
      'dataset.subsample={size: 24, seed: 0, stratified: false}',
      ...[`runtime.output_dir=${runs}`, `runtime.cache_dir=${path.join(project, 'cache')}`],
    ].flatMap((s) => ['--set', s]);
    sweep = await cli(['sweep', 'paper/glue/rte', ...small, '--allow-path', path.dirname(GLUE)]);
    assert.equal(sweep.code, 0, sweep.err);
    dir = sweep.out.trim();
  });

  test('the sweep prints its directory, then the next steps', () => {
    assert.ok(fs.existsSync(path.join(dir, 'sweep.lock.json')), sweep.out);
    assert.match(sweep.err, /Next steps:\n.*\n\s+npx childtune report \S*paper-rte-sweep/);
    assert.match(sweep.err, /npx childtune compare \S+trial-000 \S+trial-001/);
  });

  test('each run records its predicted classes and the majority-class score; one class is a warning in the log', () => {
    const trials = fs.readdirSync(dir).filter((d) => d.startsWith('trial-'));
    assert.equal(trials.length, 6);
    let single = 0;
    for (const t of trials) {
      const r = JSON.parse(fs.readFileSync(path.join(dir, t, 'results.json'), 'utf8'));
      const counts = Object.values(r.predicted_classes) as number[];
      assert.deepEqual(Object.keys(r.predicted_classes), ['entailment', 'not_entailment']);
      assert.equal(
        counts.reduce((a, b) => a + b, 0),
        277,
        'every RTE dev example',
      );
      assert.equal(r.single_class_prediction, counts.filter((n) => n > 0).length === 1);
      assert.ok(['entailment', 'not_entailment'].includes(r.majority_baseline.class));
      assert.ok(r.majority_baseline.metrics.accuracy > 0.4 && r.majority_baseline.metrics.accuracy < 0.6);
      if (r.single_class_prediction) {
        single++;
        assert.match(
          sweep.err,
          new RegExp(
            `\\[trial ${Number(t.slice(6))}\\] .*warning: the model predicts '\\w+' for all 277 evaluation examples`,
          ),
        );
      }
    }
    // The situation: the tiny model at the paper's 2e-5 learns the majority class only.
    assert.ok(single > 0, 'some run predicted one class, so the warning above was checked');
  });

  test('report: significance against vanilla, readable rows, the trainable column in every format', async () => {
    const out = path.join(project, 'report');
    const r = await cli(['report', dir, '--out', out]);
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    const rows = ['vanilla', 'child-tuning-d (p=0.3)', 'child-tuning-f (p=0.3)'];
    assert.deepEqual(
      report.table.rows.map((x: { strategy: string }) => x.strategy),
      rows,
    );
    assert.deepEqual(
      report.significance.map((s: { row: string; baseline: string }) => [s.row, s.baseline]),
      rows.slice(1).map((x) => [x, 'vanilla']),
    );
    const file = (f: string) => fs.readFileSync(path.join(out, f), 'utf8');
    for (const f of ['report.md', 'report.tex', 'report.csv', 'report.html']) {
      assert.doesNotMatch(file(f), /strategy=|"kind"|&quot;/, f);
      for (const row of rows) assert.ok(file(f).includes(row), `${row} in ${f}`);
    }
    assert.match(file('report.md'), /\| trainable \|/);
    assert.match(file('report.md'), /Difference from vanilla/);
    assert.match(file('report.html'), /<th>trainable/);
    assert.doesNotMatch(file('report.html'), /No significance test/);
    assert.match(file('report.tex'), /& Trainable \\\\/);
    assert.match(file('report.csv'), /^strategy,.*,trainable\n/);
    assert.ok(report.table.rows.every((x: { trainable: number | null }) => x.trainable !== null));
    assert.ok(
      report.table.rows.every((x: any) => x.cells['glue/rte'].majority !== null),
      'majority beside every score',
    );
    const single = report.table.rows.reduce((a: number, x: any) => a + x.cells['glue/rte'].single_class_runs, 0);
    assert.ok(single > 0);
    assert.match(file('report.md'), /⚠ one class in \d of 2/);
    assert.match(r.err, /runs predicted one class for every evaluation example/);
  });
});
