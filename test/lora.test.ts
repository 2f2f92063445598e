import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import { writeAtomic } from '../src/engine/files.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { readSafetensors } from '../src/engine/safetensors.js';
import { saveModel } from '../src/engine/save.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import type { OptionsOf } from '../src/strategies/definition.js';
import { loraDefinition } from '../src/strategies/lora/index.js';
import { mergedWeights } from '../src/strategies/lora/save.js';
import { modifiersFor } from '../src/strategies/registry.js';
import { DELTA_DIR, deltaBatch, trainOnDeltaBatch } from './delta-fixture.js';
import { FIXTURES, tmpProject } from './helpers.js';

const ALL = [
  'query',
  'key',
  'value',
  'attention.output.dense',
  'intermediate.dense',
  'output.dense',
] as OptionsOf<'lora'>['target_modules'];

const lora = (o: Partial<OptionsOf<'lora'>> = {}) =>
  ({
    kind: 'lora',
    r: 4,
    alpha: 8,
    dropout: 0,
    target_modules: ['query', 'value'],
    save: 'merged',
    ...o,
  }) as OptionsOf<'lora'>;
const loadLora = (dir: string, o: OptionsOf<'lora'>, seed = 1) =>
  loadPretrained(dir, { numLabels: 2, seed, modifiers: modifiersFor(o as Recipe['strategy']) }).model;

const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]));
  return w;
};

describe('lora', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  test('at initialisation the model gives the base model outputs bit for bit; A is drawn as PEFT draws it, B is zero', () => {
    const dir = path.join(FIXTURES, 'bert-tiny-random');
    const base = loadPretrained(dir, { numLabels: 2, seed: 3 }).model;
    const model = loadLora(dir, lora({ target_modules: ALL, dropout: 0.1 }), 3);
    const b = deltaBatch();
    b.inputIds = b.inputIds.map((t) => t % 60);
    const want = base.predict(b, true);
    const got = model.predict(b, true);
    assert.ok(
      want.hidden!.every((x, i) => x === got.hidden![i]),
      'hidden states',
    );
    assert.ok(
      want.logits.every((x, i) => x === got.logits[i]),
      'logits',
    );
    model.specs.forEach((spec, i) => {
      if (spec.name.endsWith('lora_B.weight'))
        assert.ok(
          model.values[i].every((x) => x === 0),
          spec.name,
        );
      if (spec.name.endsWith('lora_A.weight')) {
        // kaiming_uniform_(a=sqrt(5)) on [r, in]: uniform within 1/sqrt(in).
        const bound = 1 / Math.sqrt(spec.shape[1]);
        assert.ok(model.values[i].every((x) => Math.abs(x) <= bound) && model.values[i].some((x) => x !== 0));
      }
      // Every pretrained weight but the classifier's (PEFT's SEQ_CLS modules_to_save) is frozen: no gradient for it.
      assert.equal(spec.trainable, spec.source === 'strategy' || spec.name.startsWith('classifier.'), spec.name);
    });
    assert.equal(model.specs.filter((s) => s.source === 'strategy').length, 2 * 6 * base.config.numLayers);
    base.dispose();
    model.dispose();
  });

  test('gradients of A and B (with LoRA dropout, on every target) match central differences', () => {
    const model = loadLora(DELTA_DIR, lora({ target_modules: ALL, dropout: 0.2, r: 2 }));
    const probe = new Rng(9);
    model.specs.forEach((s, i) => {
      if (s.source === 'strategy') model.values[i] = model.values[i].map(() => probe.normal() * 0.05);
    });
    model.markDirty();
    const b = deltaBatch();
    const lossAt = () =>
      model.step(
        b,
        model.specs.map((s) => new Float32Array(sizeOf(s))),
        new Rng(5),
      ).loss;
    const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
    model.step(b, grads, new Rng(5));
    let checked = 0;
    model.specs.forEach((spec, i) => {
      if (spec.source !== 'strategy') return;
      const dir = model.values[i].map(() => probe.normal());
      const orig = model.values[i];
      const eps = 3e-3;
      model.values[i] = orig.map((w, j) => w + eps * dir[j]);
      model.markDirty();
      const up = lossAt();
      model.values[i] = orig.map((w, j) => w - eps * dir[j]);
      model.markDirty();
      const down = lossAt();
      model.values[i] = orig;
      model.markDirty();
      const numeric = (up - down) / (2 * eps);
      let analytic = 0;
      for (let j = 0; j < dir.length; j++) analytic += grads[i][j] * dir[j];
      assert.ok(
        Math.abs(numeric - analytic) <= 2e-2 * Math.max(Math.abs(numeric), Math.abs(analytic)) + 2e-4,
        `${spec.name}: analytic ${analytic} vs numeric ${numeric}`,
      );
      checked++;
    });
    assert.equal(checked, 2 * 2 * 6);
    model.dispose();
  });

  test('merged equals unmerged after a few training steps, and the merged save loads as a plain model', () => {
    const o = lora({ dropout: 0.1 });
    const model = loadLora(DELTA_DIR, o);
    trainOnDeltaBatch(model, 3, 7);
    const b = deltaBatch();
    const unmerged = model.predict(b).logits;
    const plain = loadPretrained(DELTA_DIR, { numLabels: 2, seed: 99 }).model;
    mergedWeights(o, model.specs, model.values).forEach((w, i) => {
      if (i < plain.values.length) plain.values[i] = w;
    });
    plain.markDirty();
    const merged = plain.predict(b).logits;
    assert.ok(worst(merged, unmerged) <= 1e-5, `merged vs unmerged: ${worst(merged, unmerged)}`);
    assert.ok(
      worst(unmerged, loadPretrained(DELTA_DIR, { numLabels: 2, seed: 1 }).model.predict(b).logits) > 1e-3,
      'it trained',
    );

    // Through the save hook: model.safetensors holds the merged weights and no LoRA tensor.
    const dir = path.join(tmpProject(), 'model');
    const saved = loraDefinition.save!({
      options: o as never,
      config: model.config,
      specs: model.specs,
      values: model.values,
      modelDir: DELTA_DIR,
    });
    saveModel(model, dir, { source: DELTA_DIR, weights: saved.weights, files: saved.files });
    assert.ok(![...readSafetensors(path.join(dir, 'model.safetensors')).keys()].some((k) => k.includes('lora')));
    const reloaded = loadPretrained(dir, { numLabels: 2, seed: 5 });
    assert.deepEqual(reloaded.notes, [], 'nothing missing or fresh');
    const again = reloaded.model.predict(b).logits;
    assert.ok(worst(again, unmerged) <= 1e-5, `saved merged vs unmerged: ${worst(again, unmerged)}`);
    model.dispose();
    plain.dispose();
    reloaded.model.dispose();
  });

  test("saving a model with a strategy's parameters but no save decision fails instead of writing unknown tensors", () => {
    const model = loadLora(DELTA_DIR, lora());
    assert.throws(
      () => saveModel(model, path.join(tmpProject(), 'model'), { source: DELTA_DIR }),
      /strategy added .*lora_A/,
    );
    model.dispose();
  });

  test("save: adapter writes PEFT's layout; loading it back over the pretrained model and merging reproduces the merged save", () => {
    const o = lora({
      save: 'adapter',
      dropout: 0.1,
      r: 2,
      alpha: 16,
      target_modules: ['value', 'query', 'intermediate.dense'],
    });
    const model = loadLora(DELTA_DIR, o);
    trainOnDeltaBatch(model, 2, 7);
    const input = {
      options: o as never,
      config: model.config,
      specs: model.specs,
      values: model.values,
      modelDir: DELTA_DIR,
    };
    const dir = path.join(tmpProject(), 'model');
    const saved = loraDefinition.save!(input);
    saveModel(model, dir, { source: DELTA_DIR, weights: saved.weights, files: saved.files });
    assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors')), 'the adapter files are the model');
    assert.ok(fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(path.join(dir, 'vocab.txt')));

    const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    assert.deepEqual(
      { ...config, target_modules: [...config.target_modules].sort() },
      {
        alpha_pattern: {},
        auto_mapping: null,
        base_model_name_or_path: DELTA_DIR,
        bias: 'none',
        fan_in_fan_out: false,
        inference_mode: true,
        init_lora_weights: true,
        layers_pattern: null,
        layers_to_transform: null,
        lora_alpha: 16,
        lora_dropout: 0.1,
        // PEFT's SEQ_CLS default: the classifier alone trains beside the updates.
        modules_to_save: ['classifier'],
        peft_type: 'LORA',
        r: 2,
        rank_pattern: {},
        revision: null,
        target_modules: ['intermediate.dense', 'query', 'value'],
        task_type: 'SEQ_CLS',
        use_dora: false,
        use_rslora: false,
      },
    );

    const tensors = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
    const H = model.config.hiddenSize;
    const expected: Record<string, number[]> = {
      'base_model.model.classifier.weight': [2, H],
      'base_model.model.classifier.bias': [2],
    };
    for (let l = 0; l < model.config.numLayers; l++) {
      const at = `base_model.model.bert.encoder.layer.${l}`;
      for (const [m, out, inDim] of [
        ['attention.self.query', H, H],
        ['attention.self.value', H, H],
        ['intermediate.dense', model.config.intermediateSize, H],
      ] as const) {
        expected[`${at}.${m}.lora_A.weight`] = [2, inDim];
        expected[`${at}.${m}.lora_B.weight`] = [out, 2];
      }
    }
    assert.deepEqual(Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape])), expected);
    assert.ok([...tensors.values()].every((t) => t.dtype === 'F32'));

    // Our own reading of the adapter: pretrained W [out, in] + (alpha/r) B A, the head replaced.
    const base = readSafetensors(path.join(DELTA_DIR, 'model.safetensors'));
    const mergedSave = path.join(tmpProject(), 'merged');
    const m = loraDefinition.save!({ ...input, options: { ...o, save: 'merged' } as never });
    saveModel(model, mergedSave, { source: DELTA_DIR, weights: m.weights });
    const merged = readSafetensors(path.join(mergedSave, 'model.safetensors'));
    const scale = 16 / 2;
    for (const [name, t] of merged) {
      const head = tensors.get(`base_model.model.${name}`);
      const site = name.replace(/\.weight$/, '');
      const a = tensors.get(`base_model.model.${site}.lora_A.weight`);
      let want = head ? head.data : base.get(name)!.data;
      if (a) {
        const bm = tensors.get(`base_model.model.${site}.lora_B.weight`)!;
        const [out, inDim] = t.shape;
        want = want.map((w, k) => {
          const [row, col] = [Math.floor(k / inDim), k % inDim];
          let s = 0;
          for (let j = 0; j < 2; j++) s += bm.data[row * 2 + j] * a.data[j * inDim + col];
          return w + scale * s;
        });
        assert.equal(out * inDim, want.length);
      }
      assert.ok(worst(t.data, want) <= 1e-6, `${name}: ${worst(t.data, want)}`);
    }
    assert.equal(merged.size, base.size);
    model.dispose();
  });

  test('head pooler+classifier: modules_to_save lists the pooler and the adapter file holds it', () => {
    const o = lora({ save: 'adapter', head: 'pooler+classifier' });
    const model = loadLora(DELTA_DIR, o);
    const saved = loraDefinition.save!({
      options: o as never,
      config: model.config,
      specs: model.specs,
      values: model.values,
      modelDir: DELTA_DIR,
    });
    assert.deepEqual(JSON.parse(saved.files!['adapter_config.json'] as string).modules_to_save, [
      'classifier',
      'pooler',
    ]);
    const dir = tmpProject();
    const file = path.join(dir, 'adapter_model.safetensors');
    writeAtomic(file, saved.files!['adapter_model.safetensors']);
    const names = [...readSafetensors(file).keys()].filter((n) => !n.includes('.lora_'));
    assert.deepEqual(names.sort(), [
      'base_model.model.bert.pooler.dense.bias',
      'base_model.model.bert.pooler.dense.weight',
      'base_model.model.classifier.bias',
      'base_model.model.classifier.weight',
    ]);
    model.dispose();
  });

  test('target_modules output.dense alone is written as full module names (PEFT would also match attention.output.dense)', () => {
    const o = lora({ save: 'adapter', target_modules: ['output.dense'] });
    const model = loadLora(DELTA_DIR, o);
    const saved = loraDefinition.save!({
      options: o as never,
      config: model.config,
      specs: model.specs,
      values: model.values,
      modelDir: DELTA_DIR,
    });
    const config = JSON.parse(saved.files!['adapter_config.json'] as string);
    assert.deepEqual(config.target_modules, ['bert.encoder.layer.0.output.dense', 'bert.encoder.layer.1.output.dense']);
    model.dispose();
  });
});
