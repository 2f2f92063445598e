import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { computeMetrics, mcc, spearman } from '../src/data/metrics.js';
import { loadSplit } from '../src/data/load.js';
import { subsampleIndices } from '../src/data/subsample.js';
import { TASKS, taskSpecOf } from '../src/data/tasks.js';
import { selectBackend } from '../src/engine/backend.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { selectChild } from '../src/strategies/fisher.js';
import { kthLargest } from '../src/strategies/select.js';
import { childTuningD } from '../src/strategies/child-tuning-d/index.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import { maskRange } from '../src/strategies/strategy.js';
import { vanilla } from '../src/strategies/vanilla/index.js';
import { getBit } from '../src/engine/bitset.js';
import { AdamW, cli, FIXTURES, GLUE, microModel, tinyModelRecipe, tmpProject, write } from './helpers.js';

describe('data', () => {
  test('the shipped GLUE files load with their documented sizes', () => {
    const sizes: Record<string, [string, number, number]> = {
      'glue/cola': ['CoLA', 8551, 1043],
      'glue/mrpc': ['MRPC', 3668, 408],
      'glue/sts-b': ['STS-B', 5749, 1500],
      'glue/rte': ['RTE', 2490, 277],
    };
    for (const [task, [dir, train, dev]] of Object.entries(sizes)) {
      const spec = TASKS[task as keyof typeof TASKS];
      assert.equal(loadSplit(spec, path.join(GLUE, dir), 'train').examples.length, train);
      assert.equal(loadSplit(spec, path.join(GLUE, dir), 'dev').examples.length, dev);
    }
    const mrpc = loadSplit(TASKS['glue/mrpc'], path.join(GLUE, 'MRPC'), 'dev').examples[0];
    assert.ok(mrpc.textA.length > 10 && mrpc.textB!.length > 10);
  });

  test('a malformed row names file and line, or is counted under on_bad_row: skip', () => {
    const dir = tmpProject();
    write(
      dir,
      'train.tsv',
      'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n2\tonly two\n3\tc\td\tnot_entailment\n',
    );
    assert.throws(
      () => loadSplit(TASKS['glue/rte'], dir, 'train'),
      /train\.tsv:3: label 'maybe' is not one of entailment, not_entailment/,
    );
    const skipped = loadSplit(TASKS['glue/rte'], dir, 'train', 'skip');
    assert.equal(skipped.examples.length, 2);
    assert.equal(skipped.skipped.count, 2);
    write(
      dir,
      'dev.tsv',
      'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tg\tf\ty\to\ts\ts\ta\tb\tfive\n',
    );
    assert.throws(() => loadSplit(TASKS['glue/sts-b'], dir, 'dev'), /dev\.tsv:2: score 'five' is not a number/);
  });

  test('custom csv and jsonl files with declared fields', () => {
    const dir = tmpProject();
    write(dir, 'a.csv', 'text,label\n"hello, ""world""",pos\n"multi\nline",neg\n');
    const spec = taskSpecOf({
      task: 'custom',
      format: 'csv',
      files: { train: 'a.csv' },
      text_fields: ['text'],
      label_field: 'label',
      labels: ['neg', 'pos'],
    } as never);
    const ex = loadSplit(spec, dir, 'train').examples;
    assert.deepEqual(
      ex.map((e) => [e.textA, e.label, e.line]),
      [
        ['hello, "world"', 1, 2],
        ['multi\nline', 0, 3],
      ],
    );
    write(dir, 'b.jsonl', '{"s": "x", "y": 0.5}\nnot json\n');
    const j = taskSpecOf({
      task: 'custom',
      format: 'jsonl',
      files: { train: 'b.jsonl' },
      text_fields: ['s'],
      label_field: 'y',
      regression: true,
    } as never);
    assert.throws(() => loadSplit(j, dir, 'train'), /b\.jsonl:2: not valid JSON/);
  });

  test('subsampling is deterministic, sized, and stratified', () => {
    const ex = loadSplit(TASKS['glue/rte'], path.join(GLUE, 'RTE'), 'train').examples;
    const a = subsampleIndices(ex, 1000, 3, true);
    assert.deepEqual(subsampleIndices(ex, 1000, 3, true), a);
    assert.notDeepEqual(subsampleIndices(ex, 1000, 4, true), a);
    assert.equal(new Set(a).size, 1000);
    const share = (idx: number[]) => idx.filter((i) => ex[i].label === 1).length / idx.length;
    assert.ok(Math.abs(share(a) - share(ex.map((_, i) => i))) < 0.001);
    assert.throws(() => subsampleIndices(ex, 5000, 0, true), /larger than the split/);
  });

  test('metrics', () => {
    assert.equal(mcc([1, 1, 0, 0], [1, 1, 0, 0]), 1);
    assert.equal(spearman([1, 2, 3], [10, 20, 30]), 1);
    const m = computeMetrics(['accuracy', 'f1'], [1, 0, 1, 1], [1, 0, 0, 1]);
    assert.equal(m.accuracy, 0.75);
    assert.equal(m.f1, 0.8);
  });
});

describe('strategies', () => {
  test('F keeps reserve_p of the elements in expectation and is unbiased', () => {
    const spec = {
      name: 'w',
      shape: [200000],
      transposed: false,
      decay: true,
      group: 'encoder' as const,
      init: 'normal' as const,
    };
    const f = childTuningF(0.3, 'all', [spec], 1);
    const g = new Float32Array(200000).fill(2);
    maskRange(f.spec, 0, g, 0, g.length, 1);
    const kept = g.filter((v) => v !== 0).length / g.length;
    assert.ok(Math.abs(kept - 0.3) < 0.005, `kept ${kept}`);
    const mean = g.reduce((a, b) => a + b, 0) / g.length;
    assert.ok(Math.abs(mean - 2) < 0.03, `mean ${mean}`);
  });

  test('kthLargest equals the sorted answer on random data with ties', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 200 }), fc.nat(), (xs, k0) => {
        const a = Float32Array.from(xs);
        const k = (k0 % xs.length) + 1;
        assert.equal(kthLargest(a, k), [...a].sort((x, y) => y - x)[k - 1]);
      }),
    );
  });

  test('D keeps exactly the top fraction, ties broken by flat order', () => {
    const model = microModel();
    const fisher = model.specs.map((s) =>
      s.group === 'encoder' ? new Float32Array(sizeOf(s)).map((_, j) => (j % 7) / 7) : new Float32Array(0),
    );
    const total = fisher.reduce((a, f) => a + f.length, 0);
    const sel = selectChild(model, fisher, 0.25, 'encoder');
    let kept = 0;
    sel.masks.forEach((m, i) => {
      if (m) for (let j = 0; j < fisher[i].length; j++) kept += getBit(m, j);
    });
    assert.equal(kept, Math.round(0.25 * total));
    assert.equal(sel.kept, kept);
    sel.masks.forEach((m, i) => {
      if (m) for (let j = 0; j < fisher[i].length; j++) if (fisher[i][j] > sel.threshold) assert.equal(getBit(m, j), 1);
    });
    assert.equal(sel.masks[model.indexOf('classifier.weight')], undefined);
  });

  const train = (strategyOf: (m: ReturnType<typeof microModel>) => Parameters<AdamW['update']>[3], wd = 0.01) => {
    const model = microModel();
    const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
    const opt = new AdamW(model.specs, { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-6, weightDecay: wd });
    const strategy = strategyOf(model);
    const rng = new Rng(2);
    const batch = {
      batch: 1,
      seq: 4,
      inputIds: Int32Array.from([2, 5, 6, 3]),
      tokenTypeIds: new Int32Array(4),
      attentionMask: new Float32Array(4).fill(1),
      labels: Float32Array.from([1]),
    };
    const losses = [];
    for (let s = 0; s < 5; s++) {
      losses.push(model.step(batch, grads, rng).loss);
      opt.update(model.values, grads, 1e-2, strategy);
      model.markDirty();
    }
    model.dispose();
    return { losses, values: model.values, model };
  };

  test('with reserve_p = 1, F and D equal vanilla bit for bit', async () => {
    await selectBackend('wasm');
    const ref = train(() => vanilla());
    const f = train((m) => childTuningF(1, 'all', m.specs, 3));
    const d = train((m) =>
      childTuningD(
        m.specs.map((s) => (s.group === 'encoder' ? new Uint8Array(Math.ceil(sizeOf(s) / 8)).fill(255) : undefined)),
        false,
      ),
    );
    assert.deepEqual(f.losses, ref.losses);
    assert.deepEqual(d.losses, ref.losses);
    f.values.forEach((v, i) => assert.deepEqual(v, ref.values[i]));
    d.values.forEach((v, i) => assert.deepEqual(v, ref.values[i]));
  });

  test('D leaves non-child parameters unchanged when weight decay is 0', () => {
    const start = microModel().values;
    let masks: (Uint8Array | undefined)[] = [];
    const d = train((m) => {
      masks = m.specs.map((s) =>
        s.group === 'encoder'
          ? new Uint8Array(Math.ceil(sizeOf(s) / 8)).map((_, k) => (k % 2 ? 0xaa : 0x0f))
          : undefined,
      );
      return childTuningD(masks, false);
    }, 0);
    let frozen = 0,
      moved = 0;
    masks.forEach((m, i) => {
      if (!m) return;
      for (let j = 0; j < start[i].length; j++) {
        if (!getBit(m, j)) {
          assert.equal(d.values[i][j], start[i][j]);
          frozen++;
        } else if (d.values[i][j] !== start[i][j]) moved++;
      }
    });
    assert.ok(frozen > 100 && moved > 100);
  });
});

describe('cli', () => {
  const env = { CHILDTUNE_MODEL: path.join(FIXTURES, 'bert-tiny-glue-mlm'), CHILDTUNE_DATA: path.dirname(GLUE) };
  before(() => Object.assign(process.env, env));

  test('validate: exit 0, 1 with compiler-style diagnostics, --json, 2 on usage errors', async () => {
    const dir = tmpProject();
    const good = write(
      dir,
      'good.yaml',
      'version: 1\nmodel: {path: "${CHILDTUNE_MODEL}"}\ndataset: {task: glue/rte, dir: "${CHILDTUNE_DATA}/glue/RTE"}\n',
    );
    assert.equal((await cli(['validate', good])).code, 0);
    const bad = write(
      dir,
      'bad.yaml',
      'version: 1\nmodel: {path: "${CHILDTUNE_MODEL}"}\ndataset: {task: glue/rtee, dir: "${CHILDTUNE_DATA}/glue/RTE"}\n',
    );
    const r = await cli(['validate', bad]);
    assert.equal(r.code, 1);
    assert.match(r.err, /bad\.yaml:3:11: error CT0105 invalid-value: dataset\.task is string "glue\/rtee"/);
    assert.match(r.err, /did you mean 'glue\/rte'\?/);
    assert.doesNotMatch(r.err, /\n\s+at /);
    const j = await cli(['validate', bad, '--json']);
    assert.equal(JSON.parse(j.out).diagnostics[0].code, 'CT0105');
    assert.equal((await cli(['validate'])).code, 2);
    assert.equal((await cli(['validate', good, '--bogus'])).code, 2);
  });

  test('init writes a starter that validates; recipes lists the bundled ones', async () => {
    const file = path.join(tmpProject(), 'starter.yaml');
    assert.equal((await cli(['init', file])).code, 0);
    assert.equal((await cli(['validate', file])).code, 0);
    assert.equal((await cli(['init', file])).code, 1);
    assert.match((await cli(['recipes'])).out, /^quickstart /m);
  });

  test('run: Child-Tuning-D end to end on a tiny model; the fisher stage is cached and reused', async () => {
    const recipe = await tinyModelRecipe(`dataset:
  task: glue/rte
  dir: \${CHILDTUNE_DATA}/glue/RTE
  subsample: {size: 48, seed: 0}
strategy: {kind: child-tuning-d, reserve_p: 0.2}
training: {epochs: 1, batch_size: 16, log_every: 1}
evaluation: {batch_size: 64}
`);
    const first = await cli(['run', recipe, '--set', 'dataset.eval_split=train', '--json']);
    assert.equal(first.code, 0, first.err);
    const [result] = JSON.parse(first.out);
    assert.equal(result.strategy, 'child-tuning-d');
    assert.ok(result.metrics.accuracy >= 0 && result.metrics.accuracy <= 1);
    for (const f of [
      'results.json',
      'metrics.jsonl',
      'recipe.resolved.yaml',
      'plan.json',
      'subsample.json',
      'mask-stats.json',
      'model/model.safetensors',
    ])
      assert.ok(fs.existsSync(path.join(result.dir, f)), f);
    assert.ok(!fs.existsSync(path.join(result.dir, 'run.lock')));
    const stats = JSON.parse(fs.readFileSync(path.join(result.dir, 'mask-stats.json'), 'utf8'));
    assert.equal(stats.fisher.kept, Math.round(0.2 * stats.fisher.in_scope));
    assert.equal(fs.readFileSync(path.join(result.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 4);
    const plan = await cli(['plan', recipe, '--set', 'dataset.eval_split=train']);
    assert.match(plan.out, /fisher .* \[cached\]/);
    const second = await cli(['run', recipe, '--set', 'dataset.eval_split=train', '--json']);
    assert.match(second.err, /fisher: cached/);
    assert.deepEqual(JSON.parse(second.out)[0].metrics, result.metrics);
  });

  test('a malformed data file stops the run with one clear error and exit 1', async () => {
    const dir = tmpProject();
    write(dir, 'data/train.tsv', 'sentence\tlabel\ngood\t1\nbad\t7\n');
    write(dir, 'data/dev.tsv', 'sentence\tlabel\nfine\t0\n');
    const recipe = write(
      dir,
      'r.yaml',
      'version: 1\nmodel: {path: "${CHILDTUNE_MODEL}"}\ndataset: {task: glue/sst-2, dir: ./data}\n',
    );
    const r = await cli(['run', recipe, '--set', `model.path=${path.join(FIXTURES, 'bert-tiny-random')}`]);
    assert.equal(r.code, 1);
    assert.match(r.err, /train\.tsv:3: label '7' is not one of 0, 1/);
    assert.doesNotMatch(r.err, /\n\s+at /);
  });
});
