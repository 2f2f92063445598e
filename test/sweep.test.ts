import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { collectRuns, maskOverlaps } from '../src/run/report.js';
import { k8sName } from '../src/run/sweep.js';
import { cli, GLUE, REPO, tinyModel, tmpProject, write } from './helpers.js';
import { CHROMIUM, inspectPage } from './report-browser.js';

/** The numbers of a sweep's trials, without paths and timings. */
const numbers = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((d) => d.startsWith('trial-'))
    .sort()
    .map((d) => {
      const r = JSON.parse(fs.readFileSync(path.join(dir, d, 'results.json'), 'utf8'));
      return {
        trial: r.trial,
        strategy: r.strategy,
        seed: r.seed,
        metrics: r.metrics,
        epochs: r.epochs,
        final_loss: r.final_loss,
      };
    });
const tableOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')).table;

describe('sweeps and reports', () => {
  const project = tmpProject();
  const recipe = path.join(project, 'sweep.yaml');
  const allow = ['--allow-path', path.dirname(GLUE)];
  let reference = '';

  before(async () => {
    await tinyModel(path.join(project, 'model'));
    write(
      project,
      'sweep.yaml',
      `version: 1
name: small
model: {path: ./model, max_seq_length: 32}
dataset:
  task: glue/rte
  dir: ${path.join(GLUE, 'RTE')}
  subsample: {size: 32, seed: 0}
strategy: {kind: child-tuning-f, reserve_p: 0.3}
training: {epochs: 2, batch_size: 8, log_every: 1, checkpoint_every: 2}
evaluation: {batch_size: 128}
# One thread: a worker's start-up costs more than it shares at this size (the threaded paths have their own tests).
runtime: {threads: 1}
sweep:
  grid: {strategy.kind: [child-tuning-f, child-tuning-d]}
  seeds: [1, 2]
`,
    );
    const r = await cli(['sweep', recipe, '--json', '--quiet', ...allow]);
    assert.equal(r.code, 0, r.err);
    reference = path.dirname(JSON.parse(r.out)[0].dir);
    assert.equal((await cli(['report', reference])).code, 0);
  });

  test('the lock file lists every trial with its recipe hash before any runs', () => {
    const lock = JSON.parse(fs.readFileSync(path.join(reference, 'sweep.lock.json'), 'utf8'));
    assert.equal(lock.trials.length, 4);
    assert.deepEqual(
      lock.trials.map((t: { dir: string }) => t.dir),
      ['trial-000', 'trial-001', 'trial-002', 'trial-003'],
    );
    for (const t of lock.trials) assert.match(t.recipe_hash, /^[0-9a-f]{64}$/);
    // Both D trials share one fisher stage.
    assert.equal(
      new Set(
        lock.trials
          .filter((t: { fisher_hash: string | null }) => t.fisher_hash)
          .map((t: { fisher_hash: string }) => t.fisher_hash),
      ).size,
      1,
    );
  });

  test('a sweep killed midway and resumed reports exactly what an uninterrupted sweep does', async () => {
    const child = spawn(
      process.execPath,
      [path.join(REPO, 'bin', 'childtune.js'), 'sweep', recipe, '--quiet', ...allow],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const dir = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const m = /sweep directory: (.*) \(/.exec(stderr);
        if (m && fs.existsSync(path.join(m[1], 'trial-001', 'checkpoint.json'))) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve(m[1]);
        }
      }, 5);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error(`the sweep ended before trial 1 checkpointed:\n${stderr}`));
      });
    });
    await new Promise((r) => child.once('close', r));
    assert.ok(fs.existsSync(path.join(dir, 'trial-000', 'results.json')));
    assert.ok(!fs.existsSync(path.join(dir, 'trial-001', 'results.json')));
    // No manual step: the killed trial's lock is taken over.
    const resumed = await cli(['sweep', '--resume', dir]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /lock: took over .*trial-001.*run\.lock/);
    assert.match(resumed.err, /\[trial 0\] finished earlier; skipped/);
    assert.match(resumed.err, /\[trial 1\] resume: continuing from step \d+/);
    assert.equal((await cli(['report', dir])).code, 0);
    assert.deepEqual(tableOf(dir), tableOf(reference));
    assert.deepEqual(numbers(dir), numbers(reference));

    // Changing the recipe under the lock is refused, naming the field.
    const text = fs.readFileSync(recipe, 'utf8');
    fs.writeFileSync(recipe, text.replace('batch_size: 8', 'batch_size: 4'));
    try {
      const refused = await cli(['sweep', '--resume', dir]);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /run-defining fields changed since the sweep started: training\.batch_size/);
    } finally {
      fs.writeFileSync(recipe, text);
    }
  });

  test('--emit writes a Slurm array and a Kubernetes Indexed Job; run --trial K LOCK runs one trial', async () => {
    const slurm = await cli(['sweep', recipe, '--emit', 'slurm', ...allow]);
    assert.equal(slurm.code, 0, slurm.err);
    const script = fs.readFileSync(slurm.out.trim(), 'utf8');
    assert.match(script, /--array=0-3/);
    assert.match(script, /childtune sweep --prepare/);
    assert.match(script, /--dependency=afterok:"\$prep"/);
    assert.equal(spawnSync('bash', ['-n', slurm.out.trim()]).status, 0, 'the script parses');
    const lock = path.join(path.dirname(slurm.out.trim()), 'sweep.lock.json');
    const k8s = await cli(['sweep', recipe, '--emit', 'k8s', ...allow]);
    const manifest = fs.readFileSync(k8s.out.trim(), 'utf8');
    assert.match(manifest, /completionMode: Indexed/);
    assert.match(manifest, /completions: 4/);
    assert.match(manifest, /JOB_COMPLETION_INDEX/);
    const jobNames = [...manifest.matchAll(/^ {2}name: (.+)$/gm)].map((m) => m[1]);
    assert.equal(jobNames.length, 2);
    for (const name of jobNames) assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);

    assert.equal((await cli(['sweep', '--prepare', lock])).code, 0);
    const one = await cli(['run', '--trial', '3', lock]);
    assert.equal(one.code, 0, one.err);
    assert.match(one.err, /fisher: cached/);
    const r = JSON.parse(fs.readFileSync(path.join(path.dirname(lock), 'trial-003', 'results.json'), 'utf8'));
    assert.deepEqual(r.metrics, numbers(reference)[3].metrics);
    assert.equal((await cli(['run', '--trial', '9', lock])).code, 1);
  });

  test('report writes Markdown, CSV and JSON in the paper table shape; compare notes differing seeds', async () => {
    const table = tableOf(reference);
    assert.deepEqual(table.columns, ['glue/rte']);
    assert.deepEqual(
      table.rows.map((r: { strategy: string }) => r.strategy),
      ['child-tuning-d (p=0.3)', 'child-tuning-f (p=0.3)'],
    );
    const cell = table.rows[0].cells['glue/rte'];
    assert.equal(cell.n, 2);
    assert.deepEqual(cell.seeds, [1, 2]);
    const values = numbers(reference)
      .filter((r) => r.strategy === 'child-tuning-d')
      .map((r) => r.metrics.accuracy);
    assert.ok(Math.abs(cell.mean - (values[0] + values[1]) / 2) < 1e-12);
    assert.equal(cell.max, Math.max(...values));
    const csv = fs.readFileSync(path.join(reference, 'report.csv'), 'utf8');
    assert.match(csv, /^strategy,column,metric,mean,std,max,n,seeds,majority,single_class_runs,trainable\n/);
    const md = await cli(['report', reference]);
    // The majority-class score beside the score; these tiny runs may predict one class, which is marked.
    assert.match(
      md.out,
      /\| child-tuning-d \(p=0\.3\) \| \d+\.\d\d ± \d+\.\d\d \(max \d+\.\d\d, n=2, majority \d+\.\d\d\)( ⚠ one class in [12] of 2)? \| \d+\.\d\d% \|/,
    );
    const cmp = await cli(['compare', path.join(reference, 'trial-000'), path.join(reference, 'trial-001')]);
    assert.equal(cmp.code, 0);
    assert.match(cmp.out, /glue\/rte accuracy/);
    assert.match(cmp.out, /note: the seeds differ \(A: 1; B: 2\)/);
    assert.equal((await cli(['report', path.join(project, 'nothing-here')])).code, 1);
  });

  test('the HTML report of a real sweep shows every figure, per-run curves one click away, in headless Chromium', async (t) => {
    const figures = path.join(reference, 'figures');
    const perRunLoss = fs.readFileSync(path.join(figures, 'loss-glue-rte-runs.svg'), 'utf8');
    assert.equal(
      (perRunLoss.match(/<path[^>]*aria-roledescription="line mark"/g) ?? []).length,
      4,
      'one loss line per trial',
    );
    assert.match(fs.readFileSync(path.join(figures, 'fisher-glue-rte.svg'), 'utf8'), /threshold \d\.\d\de-\d+/);
    for (const f of ['loss-glue-rte', 'metric-glue-rte', 'kept-glue-rte'])
      assert.ok(fs.existsSync(path.join(figures, `${f}.svg`)), f);
    if (!CHROMIUM) return t.skip('no Chromium here (apt-get install chromium)');
    const html = path.join(reference, 'report.html');
    assert.doesNotMatch(
      fs.readFileSync(html, 'utf8'),
      /<script|(src|href)=["']?https?:|@import|url\(/,
      'self-contained: nothing fetched',
    );
    const page = await inspectPage(html, 1300, path.join(reference, 'report-1300.png'));
    assert.ok(page.scrollWidth <= page.viewportWidth);
    assert.deepEqual(page.overlaps, []);
    assert.deepEqual(page.clipped, []);
    assert.deepEqual(page.legends['loss-glue-rte'], ['child-tuning-d (p=0.3)', 'child-tuning-f (p=0.3)']);
    assert.equal(page.perRunOpen, false);
    assert.equal(page.perRunFigures, 2);
  });
});

test('the overlap matrix is the Jaccard index of the child-network bitsets of each pair of tasks', () => {
  const dir = tmpProject();
  const run = (name: string, task: string, bits: number[]) => {
    write(
      dir,
      `${name}/results.json`,
      JSON.stringify({
        task,
        strategy: 'child-tuning-d',
        reserve_p: 0.5,
        seed: 1,
        metrics: { accuracy: 0.5 },
        transfer: {},
      }),
    );
    fs.writeFileSync(path.join(dir, name, 'child-mask.bin'), Uint8Array.from(bits));
    write(
      dir,
      `${name}/child-mask.json`,
      JSON.stringify({
        format: 'childtune-child-mask',
        version: 2,
        layout: 'checkpoint-row-major',
        bit_order: 'lsb-first',
        tensors: [{ name: 'w', shape: [16], offset: 0, bytes: 2, kept: 0 }],
      }),
    );
  };
  run('a', 'glue/rte', [0b1111, 0b0000]);
  run('b', 'glue/cola', [0b0011, 0b0001]);
  const o = maskOverlaps(collectRuns([dir]))!;
  assert.deepEqual(o.tasks, ['glue/cola', 'glue/rte']);
  // |A∩B| = 2, |A∪B| = 5.
  assert.deepEqual(o.matrix, [
    [1, 0.4],
    [0.4, 1],
  ]);
});

test('--emit k8s: Job names are DNS-1123 labels whatever the sweep is called, and unique per sweep', () => {
  const label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  const parent = tmpProject();
  const long = 'a-recipe-name-well-over-forty-characters-long-for-sure';
  const dirs = [
    path.join(parent, 'ñandú-données-sweep-20260101-120000'),
    path.join(parent, 'сеть-模型-sweep-20260101-120000'),
    path.join(parent, `${long}-sweep-20260101-120000`),
    path.join(parent, `${long}-sweep-20260101-120001`),
    path.join(parent, `${long}-sweep-20260101-120001-1`),
    path.join(parent, 'elsewhere', `${long}-sweep-20260101-120001`),
  ];
  const names = dirs.flatMap((d) => ['prepare', 'trials'].map((suffix) => k8sName(d, suffix)));
  for (const name of names) {
    assert.match(name, label, name);
    assert.ok(name.length <= 52, `${name} leaves room for an Indexed Job's pod suffix`);
  }
  assert.equal(new Set(names).size, names.length, 'no two sweeps share a Job name');
  assert.match(k8sName(dirs[0], 'trials'), /^nandu-donnees-sweep-20260101-120000-[0-9a-f]{8}-trials$/);
  assert.match(k8sName(dirs[1], 'trials'), /^sweep-20260101-120000-[0-9a-f]{8}-trials$/);
});
