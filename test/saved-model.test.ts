import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { batchOf } from '../src/engine/batch.js';
import { loadSavedModel } from '../src/engine/saved-strategy.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { modifiersFrom } from '../src/strategies/registry.js';
import { cli, GLUE, tinyModelRecipe, write } from './helpers.js';

/**
 * A model trained with prompt tuning is saved in PEFT's layout, its prompt apart from the model's weights:
 * `childtune encode` applies it (issue 28), and a run refuses to train from it, saying why.
 */
test('a model saved with its strategy apart: encode applies it; a run refuses it as model.path, with the reason', async () => {
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
  assert.ok(fs.existsSync(path.join(model, 'adapter_model.safetensors')));

  const enc = await cli(['encode', '--model', model, '--text', 'hello world', '--json', '--backend', 'wasm']);
  assert.equal(enc.code, 0, enc.err);
  const out = JSON.parse(enc.out);
  assert.ok(
    out.notes.some((n: string) => /applied the prompt-tuning modules saved in adapter_model\.safetensors/.test(n)),
  );
  // The same logits as the loader gives in-process (the prompt applied), not the pretrained model's.
  await selectBackend('wasm');
  const loaded = loadSavedModel(model, { numLabels: 2, seed: 0, modifiersFrom }).model;
  const tokenizer = loadTokenizer(model, { lowerCase: loaded.config.doLowerCase });
  const e = tokenizer.encode('hello world', undefined, 128);
  assert.deepEqual(out.logits, [...loaded.predict(batchOf([e], e.inputIds.length)).logits]);
  loaded.dispose();

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
  assert.match(
    r.err,
    /the model was trained with prompt-tuning, whose parameters are saved apart .*a run cannot train from it/,
  );
  assert.match(r.err, /`childtune encode` and `childtune predict` apply them/);
  assert.doesNotMatch(r.err, /looks like a bug|\n\s+at /);
});
