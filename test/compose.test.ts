import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { EncoderClassifier } from '../src/engine/model.js';
import { sizeOf } from '../src/engine/params.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { modifiersFor, strategyFor } from '../src/strategies/registry.js';
import { maskRange } from '../src/strategies/strategy.js';
import { cli, GLUE, microModel, tinyModelRecipe } from './helpers.js';
import { metricsOf, modelBytes } from './strategy-checks.js';

/** Child-Tuning inside another strategy's trainable set (strategy.child_tuning), with LoRA as the outer kind. */
const loraWith = (childTuning: Record<string, unknown>) =>
  ({
    kind: 'lora',
    r: 2,
    alpha: 4,
    dropout: 0,
    target_modules: ['query', 'value'],
    save: 'merged',
    child_tuning: { scope: 'encoder', mask_weight_decay: false, ...childTuning },
  }) as unknown as Recipe['strategy'];

const isLora = (name: string) => name.includes('.lora_');

describe('child_tuning inside lora', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  for (const scope of ['encoder', 'all'] as const) {
    test(`F inside LoRA (scope ${scope}) masks only the gradients of ${scope === 'all' ? 'LoRA and the classifier' : 'LoRA'}, rescaled by 1/p`, () => {
      const options = loraWith({ kind: 'child-tuning-f', reserve_p: 0.5, scope });
      const base = microModel();
      const model = new EncoderClassifier(base.config, base.numLabels, undefined, modifiersFor(options));
      const recipe = { strategy: options, training: { seed: 3 } } as Recipe;
      const strategy = strategyFor(recipe, model.specs);
      // LoRA trains the classifier beside its updates (PEFT's SEQ_CLS head); BERT's pooler stays frozen, unmasked.
      const masked = (name: string) => isLora(name) || (scope === 'all' && name.startsWith('classifier.'));
      model.specs.forEach((spec, i) => {
        const grad = new Float32Array(sizeOf(spec)).fill(1);
        const kept = maskRange(strategy.spec, i, grad, 0, grad.length, 1);
        strategy.record(i, kept, grad.length);
        if (masked(spec.name)) {
          assert.ok(
            grad.every((g) => g === 0 || g === 2),
            spec.name,
          );
          assert.equal(kept, grad.filter((g) => g === 2).length);
        } else assert.ok(grad.every((g) => g === 1) && kept === grad.length, `${spec.name} is not masked`);
      });
      const lora = model.specs.filter((s) => isLora(s.name));
      const kept = strategy.keptFractions(model.specs);
      const mean = lora.reduce((a, s) => a + kept[s.name] * sizeOf(s), 0) / lora.reduce((a, s) => a + sizeOf(s), 0);
      assert.ok(Math.abs(mean - 0.5) < 0.2, `LoRA's kept fraction ${mean}`);
      assert.equal(kept['bert.encoder.layer.0.attention.self.key.weight'], 1);
      assert.deepEqual(strategy.report(options).results.child_tuning, {
        kind: 'child-tuning-f',
        reserve_p: 0.5,
        scope,
      });
      assert.equal(strategy.report(options).results.reserve_p, 0.5);
      base.dispose();
      model.dispose();
    });
  }
});

const runRecipe = (strategy: string) =>
  tinyModelRecipe(`dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: 48, seed: 0}
strategy: ${strategy}
training: {epochs: 1, batch_size: 16, log_every: 1}
evaluation: {batch_size: 64}
runtime: {threads: 2}
`);
const allow = ['--allow-path', path.dirname(GLUE)];
const json = (dir: string, name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));

/** Two runs of a recipe, the stage cache removed in between so the fisher pass runs again. */
async function twice(recipe: string): Promise<[string, string]> {
  const dirs: string[] = [];
  for (let i = 0; i < 2; i++) {
    fs.rmSync(path.join(path.dirname(recipe), '.childtune'), { recursive: true, force: true });
    const r = await cli(['run', recipe, '--json', ...allow]);
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.err, /fisher: cached/);
    dirs.push(JSON.parse(r.out)[0].dir);
  }
  return dirs as [string, string];
}

test('D inside LoRA: the Fisher pass on the LoRA model scores only LoRA parameters, keeps p of them, and reruns bit-identically', async () => {
  const recipe = await runRecipe(
    '{kind: lora, r: 2, target_modules: [query, value], child_tuning: {kind: child-tuning-d, reserve_p: 0.3}}',
  );
  const [a, b] = await twice(recipe);
  const stats = json(a, 'mask-stats.json');
  const lora = Object.keys(stats.per_tensor).filter(isLora);
  assert.equal(lora.length, 2 * 2 * 2);
  assert.deepEqual(Object.keys(stats.fisher.per_tensor).sort(), lora.sort(), 'the child network covers LoRA only');
  // Tiny BERT: 2 layers, hidden 128 (query and value: A [2, 128] and B [128, 2] each).
  assert.equal(stats.fisher.in_scope, 2 * 2 * 2 * 2 * 128);
  assert.equal(stats.fisher.kept, Math.round(0.3 * stats.fisher.in_scope));
  for (const [name, f] of Object.entries(stats.per_tensor as Record<string, number>))
    if (!isLora(name)) assert.equal(f, 1, name);
  const results = json(a, 'results.json');
  assert.equal(results.strategy, 'lora');
  assert.equal(results.reserve_p, 0.3);
  assert.deepEqual(results.child_tuning, { kind: 'child-tuning-d', reserve_p: 0.3, scope: 'encoder' });
  assert.ok(results.trainable_share < 0.1);
  // The effective count: the classifier whole and D's child network of LoRA's parameters.
  const effective = results.trainable_parameters - stats.fisher.in_scope + stats.fisher.kept;
  assert.equal(results.effective_trainable_parameters, effective);
  assert.equal(stats.effective_trainable_parameters, effective);
  const total = results.trainable_parameters / results.trainable_share;
  assert.ok(Math.abs(results.effective_trainable_share - effective / total) < 1e-12);
  assert.deepEqual(json(b, 'mask-stats.json'), stats);
  assert.deepEqual(metricsOf(b), metricsOf(a));
  assert.deepEqual(fs.readFileSync(path.join(b, 'child-mask.bin')), fs.readFileSync(path.join(a, 'child-mask.bin')));
  assert.deepEqual(modelBytes(b), modelBytes(a));

  // The fisher stage's hash covers the outer strategy's options: another rank is another child network.
  const fisherHash = async (set: string[]) => {
    const r = await cli(['plan', recipe, '--json', ...set, ...allow]);
    assert.equal(r.code, 0, r.err);
    return (JSON.parse(r.out).stages as { kind: string; hash: string }[]).find((s) => s.kind === 'fisher')?.hash;
  };
  assert.notEqual(await fisherHash([]), undefined);
  assert.notEqual(await fisherHash(['--set', 'strategy.r=4']), await fisherHash([]));
});

test('F inside LoRA on 2 threads reruns bit-identically; kept fractions are reported for LoRA tensors only', async () => {
  const recipe = await runRecipe('{kind: lora, r: 2, child_tuning: {kind: child-tuning-f, reserve_p: 0.4}}');
  const [a, b] = await twice(recipe);
  assert.deepEqual(metricsOf(b), metricsOf(a));
  assert.deepEqual(modelBytes(b), modelBytes(a));
  const stats = json(a, 'mask-stats.json');
  for (const [name, f] of Object.entries(stats.per_tensor as Record<string, number>))
    if (isLora(name)) assert.ok(f > 0.2 && f < 0.6, `${name}: ${f}`);
    else assert.equal(f, 1, name);
});

test('validate: child_tuning is misplaced on Child-Tuning kinds, and fisher does not apply to F inside another kind', async () => {
  const onF = await runRecipe(
    '{kind: child-tuning-f, reserve_p: 0.3, child_tuning: {kind: child-tuning-d, reserve_p: 0.3}}',
  );
  const r = await cli(['validate', onF, ...allow]);
  assert.equal(r.code, 1);
  assert.match(r.out + r.err, /CT0303.*child_tuning applies only to/);
  const fisherOnF = await runRecipe(
    '{kind: lora, child_tuning: {kind: child-tuning-f, reserve_p: 0.3, fisher: {estimator: per-example}}}',
  );
  const p = await cli(['plan', fisherOnF, ...allow]);
  assert.equal(p.code, 1);
  assert.match(p.out + p.err, /CT0303.*child_tuning\.fisher applies only to child-tuning-d/);
});
