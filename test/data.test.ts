import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { DataFileError, MAX_ROW_CHARS } from '../src/data/formats.js';
import { loadSplit } from '../src/data/load.js';
import { taskSpecOf, TASKS } from '../src/data/tasks.js';
import { loadRecipe } from '../src/recipe/index.js';
import { cli, FIXTURES, tmpProject, write } from './helpers.js';

const MODEL = path.join(FIXTURES, 'bert-tiny-random');
const recipe = (dir: string, dataset: string) =>
  write(dir, 'r.yaml', `version: 1\nmodel: {path: ${MODEL}}\ndataset:\n${dataset}`);
const validate = (file: string) => loadRecipe(file, { allowedRoots: [FIXTURES] });

describe('data: local exports (datasets parquet, jsonl, csv)', () => {
  test('glue/rte exported by datasets: integer labels index ClassLabel names, validation is the dev split, files are relative to dir', () => {
    const dir = tmpProject();
    fs.mkdirSync(path.join(dir, 'export'));
    fs.writeFileSync(
      path.join(dir, 'export', 'train.parquet'),
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: 'sentence1', data: ['a', 'b', 'c'], type: 'STRING' },
            { name: 'sentence2', data: ['x', 'y', 'z'], type: 'STRING' },
            { name: 'label', data: [0n, 1n, 0n], type: 'INT64' },
            { name: 'idx', data: [0, 1, 2], type: 'INT32' },
          ],
        }),
      ),
    );
    write(
      dir,
      'export/validation.jsonl',
      '{"sentence1": "p", "sentence2": "q", "label": 1, "idx": 0}\n{"sentence1": "r", "sentence2": "s", "label": -1, "idx": 1}\n{"sentence1": "t", "sentence2": "u", "label": "entailment", "idx": 2}\n',
    );
    write(dir, 'export/test.csv', 'sentence1,sentence2,label,idx\n"a, b",c,1,0\n');
    const file = recipe(
      dir,
      '  task: glue/rte\n  dir: ./export\n  files: {train: train.parquet, validation: validation.jsonl, test: test.csv}\n',
    );
    const loaded = validate(file);
    assert.deepEqual(loaded.diagnostics, []);
    const dataset = loaded.recipe!.dataset;
    const spec = taskSpecOf(dataset);
    assert.equal(spec.files.train, path.join(dir, 'export', 'train.parquet'));
    const train = loadSplit(spec, dataset.dir, 'train');
    assert.deepEqual(
      train.examples.map((e) => [e.textA, e.textB, e.label, e.line]),
      [
        ['a', 'x', 0, 1],
        ['b', 'y', 1, 2],
        ['c', 'z', 0, 3],
      ],
    );
    const dev = loadSplit(spec, dataset.dir, 'dev');
    assert.deepEqual(
      dev.examples.map((e) => e.label),
      [1, 0],
      'class index 1 is not_entailment; the name entailment is accepted too',
    );
    assert.equal(dev.unlabelled, 1, "datasets' -1 marks a row without a label");
    assert.deepEqual(
      loadSplit(spec, dataset.dir, 'test').examples.map((e) => [e.textA, e.label]),
      [['a, b', 1]],
    );
  });

  test('custom data: the format follows the extension, integer labels index the label list, a bad label is CT0320 at validate time', () => {
    const dir = tmpProject();
    write(dir, 'd/train.csv', 'text,label\ngood,1\nbad,0\n');
    write(dir, 'd/dev.jsonl', '{"text": "fine", "label": "pos"}\n{"text": "odd", "label": 7}\n');
    const file = recipe(
      dir,
      '  task: custom\n  dir: ./d\n  files: {train: train.csv, dev: dev.jsonl}\n  text_fields: [text]\n  label_field: label\n  labels: [neg, pos]\n',
    );
    const r = validate(file);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.code, d.severity]),
      [['CT0320', 'error']],
    );
    assert.match(r.diagnostics[0].message, /dev\.jsonl:2: label '7' is not one of neg, pos \(or a class index 0-1\)/);
    write(dir, 'd/dev.jsonl', '{"text": "fine", "label": "pos"}\n');
    const ok = validate(file);
    assert.deepEqual(ok.diagnostics, []);
    assert.deepEqual(
      loadSplit(taskSpecOf(ok.recipe!.dataset), ok.recipe!.dataset.dir, 'train').examples.map((e) => e.label),
      [1, 0],
    );
    write(dir, 'd/train.txt', 'good\t1\n');
    const unknown = validate(
      recipe(
        dir,
        '  task: custom\n  dir: ./d\n  files: {train: train.txt, dev: dev.jsonl}\n  text_fields: [text]\n  label_field: label\n  labels: [neg, pos]\n',
      ),
    );
    assert.match(
      unknown.diagnostics.map((d) => `${d.code} ${d.message}`).join('\n'),
      /CT0325 .*train\.txt:0: cannot tell the format from the extension '\.txt'; set dataset\.format/,
    );
    write(dir, 'd/broken.parquet', 'PAR1 this is not parquet');
    const broken = validate(
      recipe(
        dir,
        '  task: custom\n  dir: ./d\n  files: {train: broken.parquet, dev: dev.jsonl}\n  text_fields: [text]\n  label_field: label\n  labels: [neg, pos]\n',
      ),
    );
    assert.match(
      broken.diagnostics.map((d) => `${d.code} ${d.message}`).join('\n'),
      /CT0325 .*broken\.parquet:0: not a readable parquet file \(.+\)/,
    );
  });
});

test('files relative to a dir the user supplied (an environment variable) may lie outside the project; escaping that dir may not', () => {
  const outside = tmpProject();
  write(outside, 'rte/train.jsonl', '{"sentence1": "a", "sentence2": "b", "label": 0}\n');
  write(outside, 'rte/validation.jsonl', '{"sentence1": "a", "sentence2": "b", "label": 1}\n');
  const file = recipe(
    tmpProject(),
    '  task: glue/rte\n  dir: ${DATA}/rte\n  files: {train: train.jsonl, validation: validation.jsonl}\n',
  );
  const r = loadRecipe(file, { allowedRoots: [FIXTURES], env: { DATA: outside } });
  assert.deepEqual(r.diagnostics, []);
  assert.equal(taskSpecOf(r.recipe!.dataset).files.dev, path.join(outside, 'rte', 'validation.jsonl'));
  const escape = recipe(
    tmpProject(),
    '  task: glue/rte\n  dir: ${DATA}/rte\n  files: {train: ../../../etc/passwd, validation: validation.jsonl}\n',
  );
  assert.deepEqual(
    loadRecipe(escape, { allowedRoots: [FIXTURES], env: { DATA: outside } }).diagnostics.map((d) => d.code),
    ['CT0203'],
  );
});

describe('data: bounds and problems, at validate time', () => {
  test('STS-B scores outside [0, 5] are CT0321 in either split; skipped under on_bad_row: skip, so they never reach the loss', () => {
    const dir = tmpProject();
    const head = 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n';
    const row = (s: string) => `0\tmain\tx\t2012\t1\tnone\tnone\ta\tb\t${s}\n`;
    write(dir, 'd/train.tsv', head + row('1e30') + row('2.5') + row('-40'));
    write(dir, 'd/dev.tsv', head + row('5.000') + row('5.5'));
    const file = recipe(dir, '  task: glue/sts-b\n  dir: ./d\n');
    const r = validate(file);
    assert.deepEqual(
      r.diagnostics.map((d) => d.code),
      ['CT0321', 'CT0321', 'CT0321'],
    );
    assert.match(
      r.diagnostics.map((d) => d.message).join('\n'),
      /train\.tsv:2: score 1e30 is outside \[0, 5\][^]*train\.tsv:4: score -40[^]*dev\.tsv:3: score 5\.5/,
    );
    const skip = validate(recipe(dir, '  task: glue/sts-b\n  dir: ./d\n  on_bad_row: skip\n'));
    assert.deepEqual(
      skip.diagnostics.map((d) => [d.code, d.severity]),
      [
        ['CT0322', 'warning'],
        ['CT0322', 'warning'],
      ],
    );
    assert.deepEqual(
      loadSplit(TASKS['glue/sts-b'], path.join(dir, 'd'), 'train', 'skip').examples.map((e) => e.label),
      [2.5],
    );
    assert.throws(
      () => loadSplit(TASKS['glue/sts-b'], path.join(dir, 'd'), 'train'),
      (e: unknown) => e instanceof DataFileError && e.kind === 'score',
    );
  });

  test('a 200 MB line is refused by file and line without being buffered', async () => {
    const dir = tmpProject();
    const file = path.join(dir, 'd', 'train.tsv');
    fs.mkdirSync(path.dirname(file));
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\t');
    const chunk = Buffer.alloc(1 << 20, 'x');
    for (let i = 0; i < 200; i++) fs.writeSync(fd, chunk);
    fs.writeSync(fd, '\tb\tentailment\n2\tc\td\tnot_entailment\n');
    fs.closeSync(fd);
    write(dir, 'd/dev.tsv', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n');
    try {
      const before = process.memoryUsage().heapUsed;
      const r = await cli(['validate', recipe(dir, '  task: glue/rte\n  dir: ./d\n'), '--allow-path', FIXTURES]);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        new RegExp(`error CT0323 data-row-too-large: .*train\\.tsv:3: row longer than ${MAX_ROW_CHARS} characters`),
      );
      assert.ok(process.memoryUsage().heapUsed - before < 100 * (1 << 20), 'the line was never held in memory');
      const skip = loadSplit(TASKS['glue/rte'], path.join(dir, 'd'), 'train', 'skip');
      assert.deepEqual(
        skip.examples.map((e) => e.line),
        [2, 4],
        'the rows around it are read',
      );
    } finally {
      fs.rmSync(file);
    }
  });

  test('an empty training file is reported as empty (CT0324), not as a subsample-size problem', () => {
    const dir = tmpProject();
    write(dir, 'd/train.tsv', '');
    write(dir, 'd/dev.tsv', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n');
    const r = validate(recipe(dir, '  task: glue/rte\n  dir: ./d\n  subsample: {size: 10}\n'));
    assert.deepEqual(
      r.diagnostics.map((d) => d.code),
      ['CT0324'],
    );
    assert.match(r.diagnostics[0].message, /train\.tsv \(split 'train'\) is empty/);
  });

  test('malformed rows are CT0322 (not CT0308), each named by file and line, with a count of the rest', () => {
    const dir = tmpProject();
    write(
      dir,
      'd/train.tsv',
      'index\tsentence1\tsentence2\tlabel\n' + Array.from({ length: 8 }, (_, i) => `${i}\tonly two\n`).join(''),
    );
    write(dir, 'd/dev.tsv', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n');
    const r = validate(recipe(dir, '  task: glue/rte\n  dir: ./d\n'));
    assert.deepEqual(
      r.diagnostics.map((d) => d.code),
      ['CT0322', 'CT0322', 'CT0322', 'CT0322', 'CT0322', 'CT0322'],
    );
    assert.match(r.diagnostics[0].message, /train\.tsv:2: row has 2 columns, expected 4/);
    assert.match(r.diagnostics[5].message, /3 more bad rows/);
  });
});

test('labels that differ from the task only in case: validate suggests the spelling, never on_bad_row: skip (issue 28)', () => {
  const dir = tmpProject();
  const head = 'index\tsentence1\tsentence2\tlabel\n';
  const rows = (n: number) =>
    Array.from({ length: n }, (_, i) => `${i}\ta\tb\t${i % 2 ? 'Entailment' : 'Not_Entailment'}\n`).join('');
  write(dir, 'rte/train.tsv', head + rows(8));
  write(dir, 'rte/dev.tsv', head + rows(2));
  const r = validate(recipe(dir, '  task: glue/rte\n  dir: ./rte\n'));
  const text = r.diagnostics.map((d) => [d.message, ...(d.notes ?? [])].join('\n')).join('\n');
  assert.ok(r.diagnostics.some((d) => d.code === 'CT0320'));
  assert.match(
    text,
    /The labels differ from glue\/rte's only in case \('Not_Entailment' -> 'not_entailment', 'Entailment' -> 'entailment'\); on_bad_row: skip would skip all 8 of these rows\. Rewrite them in the file exactly as entailment, not_entailment/,
  );
  assert.doesNotMatch(text, /set on_bad_row: skip/);

  write(dir, 'c/train.csv', 'text,label\na,Pos\nb,Neg\n');
  write(dir, 'c/dev.csv', 'text,label\na,Pos\n');
  const custom = validate(
    recipe(
      dir,
      '  task: custom\n  dir: ./c\n  files: {train: train.csv, dev: dev.csv}\n  text_fields: [text]\n  label_field: label\n  labels: [neg, pos]\n',
    ),
  );
  assert.match(
    custom.diagnostics.flatMap((d) => d.notes ?? []).join('\n'),
    /Write dataset\.labels as the file spells them: \[Neg, Pos\]/,
  );
});
