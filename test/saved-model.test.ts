import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { cli, GLUE, tinyModelRecipe, write } from './helpers.js';

/**
 * A model trained with prompt tuning keeps its prompt apart (strategy.safetensors): read without it, the model
 * is the pretrained one with a trained head. Whatever loads a saved model refuses it, saying why (issue 28).
 */
test('a model saved with its strategy apart is refused by encode and as model.path, with the reason', async () => {
  const file = await tinyModelRecipe(
    [
      `dataset: {task: glue/rte, dir: ${GLUE}/RTE, subsample: {size: 16, seed: 0, stratified: false}}`,
      'strategy: {kind: prompt-tuning, length: 2}',
      'training: {epochs: 1, batch_size: 8}',
      'runtime: {output_dir: ./runs}',
      '',
    ].join('\n'),
  );
  const dir = path.dirname(file);
  const run = await cli(['run', file, '--quiet', '--json', '--allow-path', GLUE]);
  assert.equal(run.code, 0, run.err);
  const model = path.join(JSON.parse(run.out)[0].dir, 'model');
  assert.ok(fs.existsSync(path.join(model, 'strategy.safetensors')));

  const enc = await cli(['encode', '--model', model, '--text', 'hello world']);
  assert.equal(enc.code, 1);
  assert.match(
    enc.err,
    /the model was trained with prompt-tuning, whose parameters are in strategy\.safetensors .*without them the outputs would be the pretrained model's/,
  );
  assert.match(enc.err, /Load the model with transformers and apply the saved modules/);
  assert.doesNotMatch(enc.err, /looks like a bug|\n\s+at /);

  const again = write(
    dir,
    'again.yaml',
    fs
      .readFileSync(file, 'utf8')
      .replace('path: ./model', `path: ${model}`)
      .replace(/strategy: .*/, 'strategy: {kind: vanilla}'),
  );
  const r = await cli(['run', again, '--quiet', '--allow-path', GLUE]);
  assert.equal(r.code, 1);
  assert.match(r.err, /the model was trained with prompt-tuning/);
});
