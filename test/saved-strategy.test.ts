import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import type { EncoderClassifier } from '../src/engine/model.js';
import { saveModel } from '../src/engine/save.js';
import { loadSavedModel, STRATEGY_CONFIG } from '../src/engine/saved-strategy.js';
import { readSafetensors } from '../src/engine/safetensors.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { definitionOf, modifiersFor, modifiersFrom } from '../src/strategies/registry.js';
import { DELTA_DIR, deltaBatch, trainOnDeltaBatch } from './delta-fixture.js';
import { tmpProject } from './helpers.js';

/**
 * Saving a strategy's modules apart, in its reference's layout (PEFT's for LoRA, prefix and prompt tuning;
 * AdapterHub's for adapters), and loading the saved model with them applied (issue 27 item 5, issue 28): a model
 * trained a few steps gives the same logits once loaded. The names and fields are checked against lists written
 * by hand from PEFT's get_peft_model_state_dict and config classes and AdapterHub's save_adapter.
 */
const strategy = (s: Record<string, unknown>) => s as unknown as Recipe['strategy'];
const H = 32;
const L = 2;

/** The fixture's model with the strategy, trained a few AdamW steps (dropout on) so every trainable tensor moves. */
function trained(options: Recipe['strategy'], steps = 3): EncoderClassifier {
  const { model } = loadPretrained(DELTA_DIR, { numLabels: 2, seed: 3, modifiers: modifiersFor(options) });
  trainOnDeltaBatch(model, steps, 10);
  return model;
}

/** Saves the model as the report stage does; returns the directory. */
function save(model: EncoderClassifier, options: Recipe['strategy']): string {
  const dir = path.join(tmpProject(), 'model');
  const saved = definitionOf(options.kind).save!({
    options: options as never,
    config: model.config,
    specs: model.specs,
    values: model.values,
    modelDir: DELTA_DIR,
  });
  saveModel(model, dir, { source: DELTA_DIR, weights: saved.weights, files: saved.files });
  return dir;
}

const worst = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((w, x, i) => Math.max(w, Math.abs(x - b[i])), 0);

describe('a model saved with its strategy apart loads with it applied', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const cases: [string, Record<string, unknown>, number][] = [
    ['adapter houlsby', { kind: 'adapter', bottleneck: 4, train_layer_norms: true }, 0],
    ['adapter pfeiffer', { kind: 'adapter', placement: 'pfeiffer' }, 0],
    ['adapter scaled-parallel', { kind: 'adapter', placement: 'scaled-parallel', head: 'pooler+classifier' }, 0],
    ['prefix-tuning', { kind: 'prefix-tuning', length: 3 }, 0],
    ['prefix-tuning numbering positions from zero', { kind: 'prefix-tuning', length: 3, positions: 'from-zero' }, 0],
    // The MLP's prefixes are computed once in float64 and saved as plain rows.
    ['prefix-tuning through the MLP', { kind: 'prefix-tuning', length: 2, reparameterize: true, mlp_hidden: 6 }, 1e-5],
    ['prompt-tuning', { kind: 'prompt-tuning', length: 3, head: 'pooler+classifier' }, 0],
    [
      'lora saved as an adapter',
      { kind: 'lora', r: 2, alpha: 4, dropout: 0, target_modules: ['query', 'value'], save: 'adapter' },
      0,
    ],
  ];
  for (const [name, options, tolerance] of cases)
    test(`${name}: the loaded model's logits are the trained model's`, () => {
      const model = trained(strategy(options));
      const want = model.predict(deltaBatch()).logits;
      const dir = save(model, strategy(options));
      const loaded = loadSavedModel(dir, { numLabels: 2, seed: 77, modifiersFrom });
      const got = loaded.model.predict(deltaBatch()).logits;
      if (tolerance === 0) assert.deepEqual(got, want);
      else assert.ok(worst(got, want) <= tolerance, `${got} against ${want}`);
      assert.match(loaded.notes.at(-1)!, new RegExp(`applied the ${options.kind} modules saved in`));
      assert.ok(!loaded.notes.some((n) => n.includes('fresh classification head')), 'the saved head, not a fresh one');
      model.dispose();
      loaded.model.dispose();
    });

  test('a prefix model saved before the positions setting loads numbered from zero, as it was trained', () => {
    const options = strategy({ kind: 'prefix-tuning', length: 3, positions: 'from-zero' });
    const model = trained(options);
    const want = model.predict(deltaBatch()).logits;
    const dir = save(model, options);
    const file = path.join(dir, STRATEGY_CONFIG);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(saved.modifiers[0].options.positions, 'from-zero');
    delete saved.modifiers[0].options.positions;
    fs.writeFileSync(file, JSON.stringify(saved));
    const loaded = loadSavedModel(dir, { numLabels: 2, seed: 77, modifiersFrom });
    assert.deepEqual(loaded.model.predict(deltaBatch()).logits, want);
    model.dispose();
    loaded.model.dispose();
  });

  test('a run cannot train from such a model: loadPretrained refuses it, saying why', () => {
    const options = strategy({ kind: 'adapter', placement: 'pfeiffer' });
    const model = trained(options, 1);
    const dir = save(model, options);
    assert.throws(
      () => loadPretrained(dir, { numLabels: 2, seed: 1 }),
      /trained with adapter, whose parameters are saved apart .*a run cannot train from it/,
    );
    model.dispose();
  });
});

describe("the saved layouts are the references'", () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const shapes = (file: string) =>
    Object.fromEntries([...readSafetensors(file)].map(([k, t]) => [k, t.shape] as const).sort());
  const json = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

  test("prompt tuning: PEFT's PromptTuningConfig and prompt_embeddings, the head under base_model.", () => {
    const options = strategy({ kind: 'prompt-tuning', length: 3, prompt_init: 'vocabulary' });
    const model = trained(options, 1);
    const dir = save(model, options);
    assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors')), 'PEFT loads the adapter over the base model');
    assert.deepEqual(shapes(path.join(dir, 'adapter_model.safetensors')), {
      'base_model.classifier.bias': [2],
      'base_model.classifier.weight': [2, H],
      prompt_embeddings: [3, H],
    });
    assert.deepEqual(json(path.join(dir, 'adapter_config.json')), {
      auto_mapping: null,
      base_model_name_or_path: DELTA_DIR,
      inference_mode: true,
      modules_to_save: ['classifier'],
      num_attention_heads: 4,
      num_layers: L,
      num_transformer_submodules: 1,
      num_virtual_tokens: 3,
      peft_type: 'PROMPT_TUNING',
      prompt_tuning_init: 'SAMPLE_VOCAB',
      prompt_tuning_init_text: null,
      revision: null,
      task_type: 'SEQ_CLS',
      token_dim: H,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: null,
    });
    const prompt = readSafetensors(path.join(dir, 'adapter_model.safetensors')).get('prompt_embeddings')!;
    assert.deepEqual(prompt.data, model.values[model.indexOf('prompt.embeddings')]);
    model.dispose();
  });

  test("prefix tuning: PEFT's prompt_embeddings [length, layers * 2 * hidden], layer l's keys in block 2l, values in 2l + 1", () => {
    const options = strategy({ kind: 'prefix-tuning', length: 2, head: 'pooler+classifier' });
    const model = trained(options, 1);
    const dir = save(model, options);
    assert.deepEqual(shapes(path.join(dir, 'adapter_model.safetensors')), {
      'base_model.bert.pooler.dense.bias': [H],
      'base_model.bert.pooler.dense.weight': [H, H],
      'base_model.classifier.bias': [2],
      'base_model.classifier.weight': [2, H],
      prompt_embeddings: [2, L * 2 * H],
    });
    const config = json(path.join(dir, 'adapter_config.json'));
    assert.deepEqual(
      [config.peft_type, config.prefix_projection, config.num_virtual_tokens, config.modules_to_save],
      ['PREFIX_TUNING', false, 2, ['classifier', 'pooler']],
    );
    const saved = readSafetensors(path.join(dir, 'adapter_model.safetensors')).get('prompt_embeddings')!.data;
    const value1 = model.values[model.indexOf('prefix.layer.1.value')];
    // Row 1 of layer 1's values: block 3 of row 1.
    assert.deepEqual(saved.subarray(L * 2 * H + 3 * H, L * 2 * H + 4 * H), value1.subarray(H, 2 * H));
    model.dispose();
  });

  test("adapters: AdapterHub's adapter_config.json (BnConfig, Python floats) and state dict names, in adapter/", () => {
    const options = strategy({ kind: 'adapter', placement: 'parallel' });
    const model = trained(options, 1);
    const dir = save(model, options);
    assert.ok(fs.existsSync(path.join(dir, 'model.safetensors')), 'the trained head is in the model');
    const names: Record<string, number[]> = {};
    for (let l = 0; l < L; l++) {
      const at = `bert.encoder.layer.${l}.output.adapters.default`;
      Object.assign(names, {
        [`${at}.adapter_down.0.weight`]: [16, H],
        [`${at}.adapter_down.0.bias`]: [16],
        [`${at}.adapter_up.weight`]: [H, 16],
        [`${at}.adapter_up.bias`]: [H],
      });
    }
    assert.deepEqual(
      shapes(path.join(dir, 'adapter', 'adapter.safetensors')),
      Object.fromEntries(Object.entries(names).sort()),
    );
    const text = fs.readFileSync(path.join(dir, 'adapter', 'adapter_config.json'), 'utf8');
    assert.match(text, /"scaling": 4\.0,/, 'a Python float, as AdapterHub tests isinstance(scaling, float)');
    assert.ok(!text.endsWith('\n'), 'json.dump writes no newline at the end');
    const config = JSON.parse(text);
    assert.deepEqual(
      { ...config, config: undefined },
      {
        config: undefined,
        hidden_size: H,
        model_class: 'BertForSequenceClassification',
        model_name: DELTA_DIR,
        model_type: 'bert',
        name: 'default',
        version: 'adapters.1.2.0',
      },
    );
    // ParBnConfig's fields and defaults.
    assert.deepEqual(config.config, {
      mh_adapter: false,
      output_adapter: true,
      reduction_factor: 2,
      non_linearity: 'relu',
      original_ln_before: false,
      original_ln_after: true,
      ln_before: false,
      ln_after: false,
      init_weights: 'mam_adapter',
      init_weights_seed: null,
      is_parallel: true,
      scaling: 4,
      use_gating: false,
      residual_before_ln: true,
      adapter_residual_before_ln: false,
      inv_adapter: null,
      inv_adapter_reduction_factor: null,
      cross_adapter: false,
      leave_out: [],
      dropout: 0,
      phm_layer: false,
      phm_dim: 4,
      factorized_phm_W: true,
      shared_W_phm: false,
      shared_phm_rule: true,
      factorized_phm_rule: false,
      phm_c_init: 'normal',
      phm_init_range: 0.0001,
      learn_phm: true,
      hypercomplex_nonlinearity: 'glorot-uniform',
      phm_rank: 1,
      phm_bias: true,
      stochastic_depth: 0,
    });
    model.dispose();
  });

  test('houlsby, pfeiffer and scaled-parallel: their sites, original_ln_before and a learned scaling', () => {
    const site = (options: Record<string, unknown>) => {
      const model = trained(strategy({ kind: 'adapter', ...options }), 1);
      const dir = save(model, strategy({ kind: 'adapter', ...options }));
      model.dispose();
      const config = json(path.join(dir, 'adapter', 'adapter_config.json')).config;
      const layer0 = Object.keys(shapes(path.join(dir, 'adapter', 'adapter.safetensors'))).filter((n) =>
        n.startsWith('bert.encoder.layer.0.'),
      );
      return { config, layer0 };
    };
    const houlsby = site({});
    assert.deepEqual(
      [
        houlsby.config.mh_adapter,
        houlsby.config.original_ln_before,
        houlsby.config.non_linearity,
        houlsby.config.init_weights,
      ],
      [true, false, 'swish', 'bert'],
    );
    assert.ok(houlsby.layer0.includes('bert.encoder.layer.0.attention.output.adapters.default.adapter_down.0.weight'));
    const pfeiffer = site({ placement: 'pfeiffer' });
    assert.deepEqual(
      [pfeiffer.config.mh_adapter, pfeiffer.config.original_ln_before, pfeiffer.config.reduction_factor],
      [false, true, 16],
    );
    const scaled = site({ placement: 'scaled-parallel' });
    assert.equal(scaled.config.scaling, 'learned');
    assert.ok(scaled.layer0.includes('bert.encoder.layer.0.output.adapters.default.scaling'));
  });
});
