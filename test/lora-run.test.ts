import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Rng } from '../src/engine/rng.js';
import { readSafetensors } from '../src/engine/safetensors.js';
import { cli, GLUE, killAndResume, tinyModelRecipe } from './helpers.js';
import { metricsOf, resultsOf } from './strategy-checks.js';

const file = (dir: string, name: string) => fs.readFileSync(path.join(dir, 'model', name));

test('a LoRA run on 2 threads (with LoRA dropout) reruns bit-identically, and a SIGKILL-and-resume reproduces it exactly', async () => {
  const recipe = await tinyModelRecipe(`dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: 32, seed: 0}
strategy: {kind: lora, r: 4, alpha: 16, dropout: 0.1, target_modules: [query, key, value]}
training: {epochs: 2, batch_size: 8, log_every: 1, checkpoint_every: 2, optimizer: {lr: 0.001}}
evaluation: {batch_size: 64}
runtime: {threads: 2}
`);
  const allow = ['--allow-path', path.dirname(GLUE)];
  const runs = [];
  for (let i = 0; i < 2; i++) {
    const r = await cli(['run', recipe, '--json', ...allow]);
    assert.equal(r.code, 0, r.err);
    runs.push(JSON.parse(r.out)[0].dir as string);
  }
  const [reference, rerun] = runs;
  assert.deepEqual(metricsOf(rerun), metricsOf(reference));
  assert.deepEqual(resultsOf(rerun), resultsOf(reference));
  assert.deepEqual(file(rerun, 'model.safetensors'), file(reference, 'model.safetensors'));

  // The report: LoRA's settings (the head its default, the classifier) and a trainable share well under 1; the saved
  // model is merged (no LoRA tensor), BERT's pooler the pretrained one.
  const results = JSON.parse(fs.readFileSync(path.join(reference, 'results.json'), 'utf8'));
  assert.equal(results.strategy, 'lora');
  assert.deepEqual(results.lora, {
    r: 4,
    alpha: 16,
    dropout: 0.1,
    target_modules: ['query', 'key', 'value'],
    head: 'classifier',
  });
  assert.ok(results.trainable_share > 0 && results.trainable_share < 0.5, `share ${results.trainable_share}`);
  const saved = readSafetensors(path.join(reference, 'model', 'model.safetensors'));
  assert.ok(![...saved.keys()].some((k) => k.includes('lora')));
  const pretrained = readSafetensors(path.join(path.dirname(recipe), 'model', 'model.safetensors'));
  const q = 'bert.encoder.layer.0.attention.self.query.weight';
  const o = 'bert.encoder.layer.0.attention.output.dense.weight';
  assert.notDeepEqual(saved.get(q)!.data, pretrained.get(q)!.data, 'the update is merged into the query weight');
  assert.deepEqual(saved.get(o)!.data, pretrained.get(o)!.data, 'an untargeted weight is the pretrained one');
  const pooler = 'bert.pooler.dense.weight';
  assert.deepEqual(saved.get(pooler)!.data, pretrained.get(pooler)!.data, 'the pooler is frozen');

  const killAt = 2 * (1 + new Rng(Date.now()).int(3));
  const runDir = await killAndResume(recipe, killAt, allow);
  assert.deepEqual(resultsOf(runDir), resultsOf(reference));
  assert.deepEqual(metricsOf(runDir), metricsOf(reference));
  assert.deepEqual(file(runDir, 'model.safetensors'), file(reference, 'model.safetensors'));
});
