import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadSplit } from '../src/data/load.js';
import { ratioSplits } from '../src/data/split-ratio.js';
import { taskSpecOf } from '../src/data/tasks.js';
import { loadRecipe } from '../src/recipe/index.js';
import { cli, FIXTURES, tmpProject, write } from './helpers.js';

const MODEL = path.join(FIXTURES, 'bert-tiny-random');

/** A SICK-shaped file: every split in one file, its SemEval_set column naming each row's. */
function sickLike(rows: number, set: (i: number) => string = (i) => ['TRAIN', 'TRAIN', 'TRIAL', 'TEST'][i % 4]) {
  const lines = ['pair_ID\tsentence_A\tsentence_B\tentailment_label\tSemEval_set'];
  for (let i = 0; i < rows; i++)
    lines.push(`${i}\ta dog runs ${i}\ta cat ${i % 3 ? 'sleeps' : 'runs'}\t${i % 2 ? 'yes' : 'no'}\t${set(i)}`);
  return lines.join('\n') + '\n';
}

const byColumn = `dataset:
  task: custom
  file: ./all.tsv
  split: {field: SemEval_set, values: {train: TRAIN, dev: TRIAL, test: TEST}}
  text_fields: [sentence_A, sentence_B]
  label_field: entailment_label
  labels: ['no', 'yes']
`;

/** The dataset block's diagnostics, as `validate` gives them. */
function diagnosticsOf(dataset: string, data: string) {
  const dir = tmpProject();
  write(dir, 'all.tsv', data);
  const file = write(dir, 'r.yaml', `version: 1\nmodel: {path: ${MODEL}}\n${dataset}`);
  return loadRecipe(file, { allowedRoots: [FIXTURES] }).diagnostics.filter((d) => d.pointer.startsWith('/dataset'));
}

describe('custom data in one file', () => {
  test('split by a column: each split keeps its rows; runs end to end on a tiny model', async () => {
    const recipe = write(
      tmpProject(),
      'r.yaml',
      `version: 1
model: {path: ${MODEL}, max_seq_length: 16}
${byColumn}strategy: {kind: vanilla}
training: {epochs: 1, batch_size: 8}
evaluation: {batch_size: 64}
`,
    );
    write(path.dirname(recipe), 'all.tsv', sickLike(40));
    const loaded = loadRecipe(recipe, { allowedRoots: [FIXTURES] });
    assert.deepEqual(loaded.diagnostics, []);
    const spec = taskSpecOf(loaded.recipe!.dataset);
    const lines = (split: string) => loadSplit(spec, undefined, split).examples.map((e) => e.line);
    assert.equal(lines('train').length, 20);
    assert.deepEqual(lines('dev').slice(0, 3), [4, 8, 12]); // rows 2, 6, 10 (line = row + 2)
    assert.equal(lines('test').length, 10);
    const r = await cli(['run', recipe, '--json', '--allow-path', FIXTURES]);
    assert.equal(r.code, 0, r.err);
    const [run] = JSON.parse(r.out) as { dir: string }[];
    assert.match(r.err, /data: 20 training examples, 10 evaluation examples/);
    const results = JSON.parse(fs.readFileSync(path.join(run.dir, 'results.json'), 'utf8'));
    assert.equal(typeof results.metrics.accuracy, 'number');
  });

  test('split by a seeded ratio: disjoint, covering, the same for the same seed, another for another', () => {
    const a = ratioSplits(101, { train: 0.8, dev: 0.1, test: 0.1 }, 1);
    assert.deepEqual(
      ['train', 'dev', 'test'].map((s) => a.get(s)!.length),
      [81, 10, 10],
    );
    assert.deepEqual(
      [...a.values()]
        .flat()
        .sort((x, y) => x - y)
        .join(),
      Array.from({ length: 101 }, (_, i) => i).join(),
    );
    // The order the shares are written in does not change the deal.
    assert.deepEqual(ratioSplits(101, { test: 0.1, dev: 0.1, train: 0.8 }, 1), a);
    assert.notDeepEqual(ratioSplits(101, { train: 0.8, dev: 0.1, test: 0.1 }, 2).get('dev'), a.get('dev'));
    // Pinned: a change of the deal changes every ratio-split experiment's data.
    assert.deepEqual(ratioSplits(10, { train: 0.5, dev: 0.5 }, 7).get('dev'), [1, 2, 4, 5, 7]);
  });

  test('a ratio split loads through the recipe, and its seed is part of the data stage', async () => {
    const dir = tmpProject();
    write(dir, 'all.tsv', sickLike(50));
    const dataset = (seed: number) => `dataset:
  task: custom
  file: ./all.tsv
  split: {ratio: {train: 0.8, dev: 0.2}, seed: ${seed}}
  text_fields: [sentence_A, sentence_B]
  label_field: entailment_label
  labels: ['no', 'yes']
`;
    const load = (seed: number) =>
      loadRecipe(write(dir, `r${seed}.yaml`, `version: 1\nmodel: {path: ${MODEL}}\n${dataset(seed)}`), {
        allowedRoots: [FIXTURES],
      });
    const one = load(1);
    assert.deepEqual(one.diagnostics, []);
    const spec = taskSpecOf(one.recipe!.dataset);
    const [train, dev] = ['train', 'dev'].map((s) => loadSplit(spec, undefined, s).examples.map((e) => e.line));
    assert.deepEqual([train.length, dev.length], [40, 10]);
    assert.equal(new Set([...train, ...dev]).size, 50);
    const other = taskSpecOf(load(2).recipe!.dataset);
    assert.notDeepEqual(
      loadSplit(other, undefined, 'dev').examples.map((e) => e.line),
      dev,
    );
    assert.notDeepEqual(spec.splitRatio, other.splitRatio); // the load-dataset stage hashes the spec
  });

  test('bad split settings and data are clear errors', () => {
    const codes = (dataset: string, data = sickLike(8)) =>
      diagnosticsOf(dataset, data).map((d) => `${d.code} ${d.pointer} ${d.message}`);
    const unknown = codes(
      byColumn,
      sickLike(8, (i) => (i === 5 ? 'VALID' : 'TRAIN')),
    );
    assert.ok(
      unknown.some((m) => /^CT0322 .*all\.tsv:7: 'SemEval_set' is 'VALID', which marks no split/.test(m)),
      unknown.join('\n'),
    );
    const missing = codes(byColumn.replace('field: SemEval_set', 'field: Set'));
    assert.ok(
      missing.some((m) => /^CT0325 .*no column 'Set' in the header/.test(m)),
      missing.join('\n'),
    );
    const sum = codes(byColumn.replace(/split: .*/, 'split: {ratio: {train: 0.8, dev: 0.3}}'));
    assert.ok(
      sum.some((m) => m.startsWith("CT0105 /dataset/split/ratio dataset.split.ratio's shares sum to 1.1")),
      sum.join('\n'),
    );
    const empty = codes(
      byColumn,
      sickLike(8, () => 'TRAIN'),
    );
    assert.ok(
      empty.some((m) => /^CT0324 \/dataset\/file split 'dev' of .*all\.tsv has no rows/.test(m)),
      empty.join('\n'),
    );
    const both = codes(byColumn.replace(/split: .*/, 'split: {field: SemEval_set, ratio: {train: 1}}'));
    assert.ok(
      both.some((m) => m.startsWith('CT0307 /dataset/split dataset.split divides by a column')),
      both.join('\n'),
    );
    const noSplit = codes(byColumn.replace(/split: .*/, 'split: {ratio: {train: 0.5, test: 0.5}}'));
    assert.ok(
      noSplit.some((m) => m.startsWith("CT0307 /dataset/split dataset.split names no split 'dev'")),
      noSplit.join('\n'),
    );
    const fileOnly = codes(byColumn.replace(/ {2}split: .*\n/, ''));
    assert.ok(
      fileOnly.some((m) => m.startsWith('CT0307 /dataset/file dataset.file holds every split')),
      fileOnly.join('\n'),
    );
  });

  test('init --custom writes a starter for data of your own that validates and plans', async () => {
    const dir = tmpProject();
    const file = path.join(dir, 'custom.yaml');
    assert.equal((await cli(['init', '--custom', file])).code, 0);
    const rows = ['split\tsentence1\tsentence2\tlabel'];
    for (let i = 0; i < 12; i++)
      rows.push(`${i % 3 ? 'train' : 'dev'}\ta ${i}\tb ${i}\t${i % 2 ? 'positive' : 'negative'}`);
    write(dir, 'data.tsv', rows.join('\n') + '\n');
    const before = process.env.CHILDTUNE_MODEL;
    process.env.CHILDTUNE_MODEL = MODEL;
    try {
      const v = await cli(['validate', file]);
      assert.equal(v.code, 0, v.out + v.err);
      const p = await cli(['plan', file, '--json']);
      assert.equal(p.code, 0, p.err);
      assert.match(p.out, /custom train/);
    } finally {
      if (before === undefined) delete process.env.CHILDTUNE_MODEL;
      else process.env.CHILDTUNE_MODEL = before;
    }
  });
});
