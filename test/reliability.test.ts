import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { encodeSafetensors, parseSafetensors, type SafetensorsError } from '../src/engine/safetensors.js';
import { cli, FIXTURES, GLUE, SHARED, tinyModel, tmpProject, write } from './helpers.js';
import { fakeRun } from './report-fixtures.js';

/** The run directory a finished or failed `childtune run` printed. */
const runDirOf = (err: string) => /run directory: (.*)/.exec(err)![1].trim();
const noStack = (text: string) => assert.doesNotMatch(text, /\n\s+at .*\(.*:\d+:\d+\)/);

describe('reliability: every bad input is one clear error, exit 1, no stack trace', () => {
  const dir = tmpProject();
  const base = (extra: string) => `version: 1
model: {path: ./model, max_seq_length: 32}
dataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}, subsample: {size: 16, seed: 0}}
training: {epochs: 1, batch_size: 8}
evaluation: {batch_size: 128}
${extra}`;
  const allow = ['--allow-path', GLUE];

  test('a non-finite loss stops the run naming the step (error.json says which stage), or is skipped and counted with on_nan: skip_step', async () => {
    await tinyModel(path.join(dir, 'model'));
    // A score of 1e39 parses as a finite number but is infinite in float32: the loss of its batch is not finite.
    const rows = Array.from(
      { length: 16 },
      (_, i) => `a man walks ${i}\ta woman runs\t${i === 5 ? '1e39' : (i % 5).toFixed(1)}`,
    );
    write(dir, 'sts/train.tsv', ['sentence1\tsentence2\tscore', ...rows].join('\n') + '\n');
    write(dir, 'sts/dev.tsv', ['sentence1\tsentence2\tscore', 'a b\tc d\t1.0', 'e f\tg h\t3.0'].join('\n') + '\n');
    // STS-B itself refuses such a score at validate time (CT0321); a custom regression task has no range.
    const recipe = write(
      dir,
      'nan.yaml',
      'version: 1\nmodel: {path: ./model, max_seq_length: 16}\ndataset: {task: custom, dir: ./sts, files: {train: train.tsv, dev: dev.tsv}, text_fields: [sentence1, sentence2], label_field: score, regression: true}\nstrategy: {kind: vanilla}\ntraining: {epochs: 1, batch_size: 8}\n',
    );
    const failed = await cli(['run', recipe]);
    assert.equal(failed.code, 1);
    assert.match(failed.err, /error: non-finite (loss|gradient norm) at step \d \(epoch 1\)/);
    assert.match(failed.err, /hint: .*on_nan: skip_step/);
    noStack(failed.err);
    const error = JSON.parse(fs.readFileSync(path.join(runDirOf(failed.err), 'error.json'), 'utf8'));
    assert.equal(error.stage, 'train');
    const skipped = await cli(['run', recipe, '--set', 'training.on_nan=skip_step', '--json']);
    assert.equal(skipped.code, 0, skipped.err);
    assert.equal(JSON.parse(skipped.out)[0].skipped_steps, 1);
  });

  test('an empty data split, and a vocabulary larger than the embedding matrix, are errors with the path', async () => {
    write(dir, 'empty/train.tsv', 'sentence\tlabel\n');
    write(dir, 'empty/dev.tsv', 'sentence\tlabel\nfine\t1\n');
    const empty = await cli([
      'run',
      write(dir, 'empty.yaml', 'version: 1\nmodel: {path: ./model}\ndataset: {task: glue/sst-2, dir: ./empty}\n'),
    ]);
    assert.equal(empty.code, 1);
    assert.match(empty.err, /error CT0324 data-file-empty: data file .*empty\/train\.tsv \(split 'train'\) is empty/);
    noStack(empty.err);

    const model = path.join(dir, 'model-big-vocab');
    fs.cpSync(path.join(dir, 'model'), model, { recursive: true });
    fs.appendFileSync(
      path.join(model, 'vocab.txt'),
      Array.from({ length: 50 }, (_, i) => `extra${i}`).join('\n') + '\n',
    );
    const mismatch = await cli([
      'run',
      write(dir, 'vocab.yaml', base('strategy: {kind: vanilla}\n').replace('./model', './model-big-vocab')),
      ...allow,
    ]);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.err, /model-big-vocab.*tokenizer has 30572 tokens but config\.json's vocab_size is 30522/);
    noStack(mismatch.err);
  });

  test('a missing model directory is a clear error; --debug adds the stack trace to a runtime error', async () => {
    const r = await cli([
      'run',
      write(dir, 'missing.yaml', base('strategy: {kind: vanilla}\n').replace('./model', './no-such-model')),
      ...allow,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.err, /no-such-model/);
    noStack(r.err);
    const debug = await cli(['run', path.join(dir, 'vocab.yaml'), ...allow, '--debug']);
    assert.equal(debug.code, 1);
    assert.match(debug.err, /tokenizer has 30572 tokens[\s\S]*\n\s+at /);
  });
});

describe('silent wrong results (issue 29): each is one clear error naming what, where and the fix', () => {
  const dir = tmpProject();
  const recipe = (name: string, extra: string) =>
    write(
      dir,
      name,
      `version: 1\nmodel: {path: ${path.join(FIXTURES, 'bert-tiny-random')}}\ndataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}}\n${extra}`,
    );
  const validate = (file: string, ...set: string[]) =>
    cli(['validate', file, '--allow-path', SHARED, ...set.flatMap((s) => ['--set', s])]);

  test('a seed beyond 32 bits is refused wherever a seed is accepted, with its position and why (the streams take 32 bits)', async () => {
    const written = recipe(
      'seeds.yaml',
      [
        'training: {seed: 4294967301}',
        'strategy: {kind: child-tuning-d, reserve_p: 0.3, fisher: {seed: 4294967296}}',
        'sweep: {seeds: [5, 4294967301], random: {trials: 1, seed: 8589934592, space: {training.optimizer.lr: {values: [0.00002]}}}}',
        '',
      ].join('\n'),
    );
    const r = await validate(written);
    assert.equal(r.code, 1);
    for (const [where, value] of [
      ['training.seed', 4294967301],
      ['strategy.fisher.seed', 4294967296],
      ['sweep.seeds.1', 4294967301],
      ['sweep.random.seed', 8589934592],
    ])
      assert.match(
        r.err,
        new RegExp(`seeds\\.yaml:\\d+:\\d+: error CT0106 out-of-range: ${where} is ${value}; it must be <= 4294967295`),
      );
    assert.match(
      r.err,
      /the random streams are seeded with 32 bits, so a larger seed would repeat a smaller one's run/,
    );
    noStack(r.err);

    const plain = recipe('plain.yaml', 'training: {seed: 4294967295}\n');
    assert.equal((await validate(plain)).code, 0, 'the largest 32-bit seed is accepted');
    const set = await validate(plain, 'training.seed=4294967296', 'dataset.subsample={size: 8, seed: 4294967296}');
    assert.equal(set.code, 1);
    assert.match(set.err, /--set.*CT0106 out-of-range: training\.seed is 4294967296/);
    assert.match(set.err, /CT0106 out-of-range: dataset\.subsample\.seed is 4294967296/);
    // A grid over training.seed gives each trial's value the same bound.
    const grid = await cli([
      'plan',
      recipe('grid.yaml', 'sweep: {grid: {training.seed: [5, 4294967301]}}\n'),
      '--allow-path',
      SHARED,
    ]);
    assert.equal(grid.code, 1);
    assert.match(
      grid.err,
      /sweep trial 1 \(training\.seed=4294967301\): training\.seed is 4294967301; it must be <= 4294967295/,
    );

    const init = await cli(['model', 'init', '--out', path.join(dir, 'seeded'), '--seed', '4294967301']);
    assert.equal(init.code, 2);
    assert.match(init.err, /4294967301 is not a 32-bit seed; give a whole number from 0 to 4294967295/);
  });

  test("Child-Tuning-F's reserve_p below 1/65536 (what a 16-bit draw resolves) is refused, on its own or inside another strategy", async () => {
    const own = await validate(recipe('tiny-p.yaml', 'strategy: {kind: child-tuning-f, reserve_p: 1.0e-320}\n'));
    assert.equal(own.code, 1);
    assert.match(
      own.err,
      /tiny-p\.yaml:4:\d+: error CT0301 reserve-p-range: reserve_p is 1e-320; Child-Tuning-F keeps at least 1\/65536 \(0\.0000152587890625\) of the elements/,
    );
    assert.match(own.err, /would run at 1\/65536 instead/);
    const inner = await validate(
      recipe('inner-p.yaml', 'strategy: {kind: lora, child_tuning: {kind: child-tuning-f, reserve_p: 0.00001}}\n'),
    );
    assert.equal(inner.code, 1);
    assert.match(inner.err, /CT0301 reserve-p-range: reserve_p is 0\.00001; Child-Tuning-F keeps at least 1\/65536/);
    const smallest = await validate(
      recipe('p-ok.yaml', 'strategy: {kind: child-tuning-f, reserve_p: 0.0000152587890625}\n'),
    );
    assert.equal(smallest.code, 0, smallest.err);
  });

  test('a tokenizer.json whose vocabulary lacks [CLS], [SEP] or [UNK] is refused by name instead of encoding every token as id 0', async () => {
    const model = path.join(dir, 'no-specials');
    fs.cpSync(path.join(FIXTURES, 'bert-tiny-random'), model, { recursive: true });
    const words = fs.readFileSync(path.join(model, 'vocab.txt'), 'utf8').trim().split('\n');
    fs.rmSync(path.join(model, 'vocab.txt'));
    const vocab = words.filter((w) => !['[CLS]', '[SEP]', '[UNK]'].includes(w));
    write(
      model,
      'tokenizer.json',
      JSON.stringify({ model: { type: 'WordPiece', vocab: Object.fromEntries(vocab.map((w, i) => [w, i])) } }),
    );
    const r = await cli(['encode', '--model', model, '--text', 'a man walks']);
    assert.equal(r.code, 1);
    assert.match(r.err, /no-specials\/tokenizer\.json: vocabulary has no \[CLS\], \[SEP\], \[UNK\] tokens/);
    assert.match(r.err, /hint: Use the tokenizer files that came with the checkpoint/);
    noStack(r.err);
  });

  test('a number where text belongs, and a custom label -1, are row errors naming file and line (never trained on, never dropped)', async () => {
    write(dir, 'rows/train.jsonl', '{"text": "fine", "label": "pos"}\n{"text": 5, "label": "neg"}\n');
    write(dir, 'rows/dev.jsonl', '{"text": "good", "label": "pos"}\n');
    const custom = (files: string) =>
      `dataset: {task: custom, dir: ./rows, files: ${files}, text_fields: [text], label_field: label, labels: [neg, pos]}\n`;
    const jsonl = await cli([
      'validate',
      write(
        dir,
        'number.yaml',
        `version: 1\nmodel: {path: ${path.join(FIXTURES, 'bert-tiny-random')}}\n${custom('{train: train.jsonl, dev: dev.jsonl}')}`,
      ),
      '--allow-path',
      SHARED,
    ]);
    assert.equal(jsonl.code, 1);
    assert.match(
      jsonl.err,
      /CT0322 data-row-invalid: .*rows\/train\.jsonl:2: field 'text' holds the number 5, not text/,
    );
    assert.doesNotMatch(jsonl.err, /missing/);

    fs.writeFileSync(
      path.join(dir, 'rows', 'train.parquet'),
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: 'text', data: ['fine', 'bad', 'meh'], type: 'STRING' },
            { name: 'label', data: [1n, 0n, -1n], type: 'INT64' },
          ],
        }),
      ),
    );
    const parquet = await cli([
      'validate',
      write(
        dir,
        'minus.yaml',
        `version: 1\nmodel: {path: ${path.join(FIXTURES, 'bert-tiny-random')}}\n${custom('{train: train.parquet, dev: dev.jsonl}')}`,
      ),
      '--allow-path',
      SHARED,
    ]);
    assert.equal(parquet.code, 1);
    assert.match(
      parquet.err,
      /CT0320 label-not-in-set: .*rows\/train\.parquet:3: label '-1' is not one of neg, pos \(or a class index 0-1\); -1 marks an unlabelled row in datasets' exports: remove such rows from the file/,
    );
  });

  test('safetensors with bytes between tensors or after the last one is refused, as the reference implementation does', () => {
    const good = encodeSafetensors(
      new Map([
        ['a', { shape: [2], data: new Float32Array([1, 2]) }],
        ['b', { shape: [2], data: new Float32Array([3, 4]) }],
      ]),
    );
    assert.equal(parseSafetensors(good).size, 2);
    assert.throws(
      () => parseSafetensors(Buffer.concat([good, Buffer.alloc(4)]), 'trailing.safetensors'),
      (e: SafetensorsError) =>
        /trailing\.safetensors: 4 bytes after the last tensor belong to no tensor \(the header describes 16 bytes of data, the file holds 20\)/.test(
          e.message,
        ) && /re-save it with safetensors/.test(e.hint!),
    );
    const headerLength = Number(good.readBigUInt64LE(0));
    const header = JSON.parse(good.subarray(8, 8 + headerLength).toString());
    header.b.data_offsets = [12, 20];
    const json = Buffer.from(JSON.stringify(header));
    const holed = Buffer.alloc(8 + json.length + 20);
    holed.writeBigUInt64LE(BigInt(json.length));
    json.copy(holed, 8);
    assert.throws(
      () => parseSafetensors(holed, 'hole.safetensors'),
      /hole\.safetensors: data bytes 8-12 between tensors 'a' and 'b' belong to no tensor/,
    );
    header.a.data_offsets = [4, 12];
    const late = Buffer.from(JSON.stringify(header));
    const gapFirst = Buffer.alloc(8 + late.length + 20);
    gapFirst.writeBigUInt64LE(BigInt(late.length));
    late.copy(gapFirst, 8);
    assert.throws(() => parseSafetensors(gapFirst), /data bytes 0-4 before tensor 'a' belong to no tensor/);
  });

  test("report refuses a score outside its metric's range (a percentage), a results.json without metrics, and a metrics.jsonl cut short", async () => {
    const report = async (name: string, change: (run: string) => void) => {
      const root = path.join(dir, 'report', name);
      const run = fakeRun(path.join(root, 'run'), { task: 'glue/rte', strategy: 'vanilla', seed: 1, score: 0.573 });
      change(run);
      const r = await cli(['report', root]);
      assert.equal(r.code, 1, `${name}: ${r.out}`);
      noStack(r.err);
      return r.err;
    };
    const results = (run: string, edit: (r: Record<string, unknown>) => void) => {
      const file = path.join(run, 'results.json');
      const r = JSON.parse(fs.readFileSync(file, 'utf8'));
      edit(r);
      fs.writeFileSync(file, JSON.stringify(r));
    };
    const percent = await report('percent', (run) => results(run, (r) => (r.metrics = { accuracy: 57.3 })));
    assert.match(percent, /run\/results\.json: "metrics\.accuracy" is 57\.3, outside accuracy's range \[0, 1\]/);
    assert.match(percent, /hint: childtune writes scores as fractions \(0\.573, not 57\.3\)/);
    const mcc = await report('mcc', (run) => results(run, (r) => (r.transfer = { snli: { mcc: -1.5 } })));
    assert.match(mcc, /"transfer\.snli\.mcc" is -1\.5, outside mcc's range \[-1, 1\]/);
    const seed = await report('seed', (run) => results(run, (r) => (r.seed = 4294967301)));
    assert.match(
      seed,
      /"seed" must be a 32-bit seed, 0 to 4294967295 \(the run drew the streams of seed 5\), found number 4294967301/,
    );
    const empty = await report('empty', (run) => results(run, (r) => (r.metrics = {})));
    assert.match(empty, /run\/results\.json: "metrics" is empty; a finished run records at least one metric/);
    const cut = await report('cut', (run) => {
      const file = path.join(run, 'metrics.jsonl');
      const text = fs.readFileSync(file, 'utf8');
      fs.writeFileSync(file, text.slice(0, text.length - 10));
    });
    const lines = fs.readFileSync(path.join(dir, 'report', 'cut', 'run', 'metrics.jsonl'), 'utf8').split('\n').length;
    assert.match(cut, new RegExp(`run/metrics\\.jsonl:${lines}: the last line is cut short`));
    const evalOut = await report('eval-range', (run) => {
      fs.appendFileSync(
        path.join(run, 'metrics.jsonl'),
        JSON.stringify({ kind: 'eval', step: 999, metrics: { f1: 2 } }) + '\n',
      );
    });
    assert.match(evalOut, /metrics\.jsonl:\d+: "metrics\.f1" is 2, outside f1's range \[0, 1\]/);
  });
});
