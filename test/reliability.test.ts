import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { cli, GLUE, tinyModel, tmpProject, write } from './helpers.js';

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
