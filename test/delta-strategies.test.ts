import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { initStrategyParams } from '../src/engine/checkpoint.js';
import { EncoderClassifier } from '../src/engine/model.js';
import type { ModelModifier } from '../src/engine/modules/modifier.js';
import { selectBackend } from '../src/engine/backend.js';
import { Rng } from '../src/engine/rng.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { definitionOf, modifiersFor } from '../src/strategies/registry.js';
import { checkModelGradients } from './gradient-checks.js';
import { microBatch, microModel } from './helpers.js';

type Family = 'bert' | 'roberta' | 'electra';
const strategy = (s: Record<string, unknown>) => s as unknown as Recipe['strategy'];

/**
 * A micro model with the strategy's modifiers: its own parameters copied from microModel, the strategy's from
 * their init (seed 4), then (spread > 0) moved off their init so no zero-initialised projection hides a gradient.
 */
function strategyModel(family: Family, modifiers: ModelModifier[], spread = 0) {
  const base = microModel({ family, embedding: family === 'electra' ? 6 : 8 });
  const model = new EncoderClassifier(base.config, base.numLabels, undefined, modifiers);
  base.values.forEach((v, i) => (model.values[i] = v));
  initStrategyParams(model, 4);
  const rng = new Rng(8);
  if (spread > 0)
    model.specs.forEach((s, i) => {
      if (s.source === 'strategy') model.values[i] = model.values[i].map((v) => v + rng.normal() * spread);
    });
  model.markDirty();
  base.dispose();
  return model;
}

describe('adapter, prefix-tuning and prompt-tuning modules', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const cases: [string, Family, Record<string, unknown>][] = [
    [
      'houlsby adapters (swish, LayerNorms training)',
      'bert',
      { kind: 'adapter', bottleneck: 3, train_layer_norms: true },
    ],
    [
      'pfeiffer adapters (gelu) on the LayerNorm of the output and residual',
      'roberta',
      { kind: 'adapter', placement: 'pfeiffer', nonlinearity: 'gelu', bottleneck: 2 },
    ],
    [
      'pfeiffer adapters (swish: no kink for the differences) with the LayerNorms training (used twice a sub-layer)',
      'bert',
      { kind: 'adapter', placement: 'pfeiffer', nonlinearity: 'swish', bottleneck: 2, train_layer_norms: true },
    ],
    [
      'parallel adapters (tanh)',
      'electra',
      { kind: 'adapter', placement: 'parallel', nonlinearity: 'tanh', bottleneck: 2 },
    ],
    [
      'scaled-parallel adapters (learned scaling, houlsby init)',
      'bert',
      { kind: 'adapter', placement: 'scaled-parallel', init: 'houlsby', bottleneck: 2 },
    ],
    ['plain prefixes', 'roberta', { kind: 'prefix-tuning', length: 2, reparameterize: false }],
    ['prefixes through the MLP', 'bert', { kind: 'prefix-tuning', length: 2, reparameterize: true, mlp_hidden: 5 }],
    [
      'prefixes through the MLP on ELECTRA',
      'electra',
      { kind: 'prefix-tuning', length: 3, reparameterize: true, mlp_hidden: 4 },
    ],
    ['a prompt from the vocabulary', 'bert', { kind: 'prompt-tuning', length: 3, prompt_init: 'vocabulary' }],
    ['a prompt from N(0, 1) (positions after padding)', 'roberta', { kind: 'prompt-tuning', length: 2 }],
    [
      'a uniform prompt in the smaller embedding',
      'electra',
      { kind: 'prompt-tuning', length: 2, prompt_init: 'uniform' },
    ],
  ];
  for (const [name, family, options] of cases)
    test(`${name} (${family}): every trainable gradient matches central differences; frozen ones are not written`, () => {
      const model = strategyModel(family, modifiersFor(strategy(options)), 0.3);
      const b = microBatch();
      const checked = checkModelGradients(model, b);
      const added = model.specs.filter((s) => s.source === 'strategy');
      assert.ok(added.length > 0 && added.every((s) => s.trainable));
      // The head trains its classifier: BERT's classifier layer, RoBERTa's and ELECTRA's dense and output layers.
      assert.ok(checked >= added.length + (family === 'bert' ? 2 : 4), 'the strategy and the head are checked');
      model.dispose();
    });

  test('trainable sets: the classifier and the strategy; train_layer_norms adds the encoder LayerNorms', () => {
    const trained = (options: Record<string, unknown>) =>
      new Set(
        new EncoderClassifier(microModel().config, 3, undefined, modifiersFor(strategy(options))).specs
          .filter((s) => s.trainable && s.source === 'checkpoint')
          .map((s) => s.name),
      );
    // PEFT's SEQ_CLS head is the classifier; head: pooler+classifier adds BERT's pooler.
    const head = ['classifier.weight', 'classifier.bias'];
    const pooler = ['bert.pooler.dense.weight', 'bert.pooler.dense.bias'];
    const norms = [0, 1].flatMap((l) =>
      ['attention.output', 'output'].flatMap((p) =>
        ['weight', 'bias'].map((w) => `bert.encoder.layer.${l}.${p}.LayerNorm.${w}`),
      ),
    );
    assert.deepEqual([...trained({ kind: 'adapter', train_layer_norms: true })].sort(), [...head, ...norms].sort());
    for (const kind of ['houlsby', 'pfeiffer', 'parallel', 'scaled-parallel'])
      assert.deepEqual([...trained({ kind: 'adapter', placement: kind })].sort(), [...head].sort(), kind);
    assert.deepEqual([...trained({ kind: 'prefix-tuning' })].sort(), [...head].sort());
    assert.deepEqual([...trained({ kind: 'prompt-tuning' })].sort(), [...head].sort());
    for (const kind of ['adapter', 'prefix-tuning', 'prompt-tuning'])
      assert.deepEqual(
        [...trained({ kind, head: 'pooler+classifier', train_layer_norms: false })].sort(),
        [...pooler, ...head].sort(),
        kind,
      );
  });

  test('adapters with the mam_adapter init (up projection zero) give the base model outputs, bit for bit', () => {
    const base = microModel();
    const b = microBatch();
    const want = base.predict(b, true);
    for (const placement of ['houlsby', 'pfeiffer', 'parallel', 'scaled-parallel']) {
      const model = strategyModel('bert', modifiersFor(strategy({ kind: 'adapter', placement, init: 'mam_adapter' })));
      const got = model.predict(b, true);
      assert.deepEqual(got.logits, want.logits, placement);
      assert.deepEqual(got.hidden, want.hidden, placement);
      model.dispose();
    }
    base.dispose();
  });

  test("prefix tuning numbers the sequences' positions after the prefix, as transformers does with past_key_values", () => {
    // after-prefix reads position row r + l where from-zero reads row r (BERT, ELECTRA); RoBERTa's real tokens
    // likewise, its padding at padding_idx either way. So from-zero with the table shifted by l gives the same.
    const b = microBatch();
    for (const family of ['bert', 'roberta', 'electra'] as Family[]) {
      const length = 3;
      const after = strategyModel(family, modifiersFor(strategy({ kind: 'prefix-tuning', length })), 0.3);
      const plain = strategyModel(
        family,
        modifiersFor(strategy({ kind: 'prefix-tuning', length, positions: 'from-zero' })),
        0.3,
      );
      const table = after.indexOf(`${family}.embeddings.position_embeddings.weight`);
      const width = after.specs[table].shape[1];
      const rows = after.specs[table].shape[0];
      const pad = family === 'roberta' ? after.config.padTokenId : -1;
      const shifted = Float32Array.from(after.values[table]);
      for (let r = pad + 1; r + length < rows; r++)
        shifted.set(after.values[table].subarray((r + length) * width, (r + length + 1) * width), r * width);
      const differs = plain.predict(b).logits.some((v, i) => v !== after.predict(b).logits[i]);
      assert.ok(differs, `${family}: the numbering changes the outputs`);
      plain.values[table] = shifted;
      plain.markDirty();
      assert.deepEqual(plain.predict(b).logits, after.predict(b).logits, family);
      // A sequence whose positions after the prefix run past the table is refused, not read out of range.
      const free = rows - (family === 'roberta' ? pad + 1 : 0) - length;
      const long = { ...b, batch: 1, seq: free + 1, labels: Float32Array.from([0]) };
      long.inputIds = new Int32Array(long.seq).fill(5);
      long.tokenTypeIds = new Int32Array(long.seq);
      long.attentionMask = new Float32Array(long.seq).fill(1);
      assert.throws(() => after.predict(long), /a prefix of 3 positions before sequences of \d+ tokens needs/);
      const fits = {
        ...long,
        seq: free,
        inputIds: long.inputIds.subarray(1),
        tokenTypeIds: long.tokenTypeIds.subarray(1),
      };
      assert.doesNotThrow(() => after.predict({ ...fits, attentionMask: long.attentionMask.subarray(1) }));
      after.dispose();
      plain.dispose();
    }
  });

  test("the bottleneck is hidden / reduction_factor (AdapterHub's 16, parallel 2) unless given; the inits", () => {
    const sizes = (options: Record<string, unknown>) =>
      new EncoderClassifier(
        microModel().config,
        3,
        undefined,
        modifiersFor(strategy({ kind: 'adapter', ...options })),
      ).specs
        .filter((s) => s.name.endsWith('.down.weight'))
        .map((s) => s.shape[0]);
    assert.deepEqual(sizes({ reduction_factor: 4 }), [2, 2, 2, 2]);
    assert.deepEqual(sizes({}), [1, 1, 1, 1], 'houlsby: 8 / 16, at least one');
    assert.deepEqual(sizes({ placement: 'parallel' }), [4, 4], 'parallel: 8 / 2');
    assert.deepEqual(sizes({ reduction_factor: 4, bottleneck: 5, placement: 'pfeiffer' }), [5, 5]);
    const values = (options: Record<string, unknown>, name: string) => {
      const model = strategyModel('bert', modifiersFor(strategy({ kind: 'adapter', bottleneck: 4, ...options })));
      const v = model.values[model.indexOf(`adapter.layer.0.output.${name}`)];
      model.dispose();
      return v;
    };
    // houlsby: N(0, 0.01^2) truncated to ±0.02; mam_adapter: the down projection within 1/sqrt(8), the up one zero.
    const truncated = values({ init: 'houlsby' }, 'up.weight');
    assert.ok(truncated.some((v) => v !== 0) && truncated.every((v) => Math.abs(v) <= 0.02));
    assert.ok(values({ init: 'houlsby' }, 'up.bias').every((v) => v === 0));
    const down = values({ placement: 'parallel' }, 'down.weight');
    assert.ok(down.some((v) => Math.abs(v) > 0.1) && down.every((v) => Math.abs(v) <= 1 / Math.sqrt(8)));
    assert.ok(values({ placement: 'parallel' }, 'down.bias').every((v) => v === 0));
    assert.ok(values({ placement: 'parallel' }, 'up.weight').every((v) => v === 0));
    assert.deepEqual([...values({ placement: 'scaled-parallel' }, 'scaling')], [1]);
  });

  test('scaling on scaled-parallel, and original_ln_before on a parallel placement, are reported', () => {
    const check = (o: Record<string, unknown>) =>
      definitionOf('adapter').check!(strategy({ kind: 'adapter', placement: 'houlsby', ...o }) as never).map((d) => [
        d.code,
        d.pointer,
        d.message,
      ]);
    assert.deepEqual(check({ placement: 'scaled-parallel', scaling: 2 }), [
      [
        'CT0303',
        '/strategy/scaling',
        'scaling is a constant for houlsby, pfeiffer and parallel; scaled-parallel learns it, not scaled-parallel',
      ],
    ]);
    assert.deepEqual(check({ placement: 'parallel', original_ln_before: true }), [
      [
        'CT0303',
        '/strategy/original_ln_before',
        'original_ln_before applies to the sequential placements (houlsby, pfeiffer), not parallel',
      ],
    ]);
    assert.deepEqual(check({ scaling: 2, original_ln_before: true }), []);
  });

  test('a vocabulary prompt copies word embedding rows drawn with the seed, in the embedding width', () => {
    const mods = modifiersFor(strategy({ kind: 'prompt-tuning', length: 6, prompt_init: 'vocabulary' }));
    const model = strategyModel('bert', mods);
    const words = model.values[model.indexOf('bert.embeddings.word_embeddings.weight')];
    const prompt = model.values[model.indexOf('prompt.embeddings')];
    const rows = [...Array(6).keys()].map((r) => {
      const row = prompt.subarray(r * 8, r * 8 + 8);
      return [...Array(40).keys()].find((w) => words.subarray(w * 8, w * 8 + 8).every((v, j) => v === row[j]));
    });
    assert.ok(
      rows.every((r) => r !== undefined),
      `every prompt row is a word embedding row: ${rows}`,
    );
    assert.ok(new Set(rows).size > 1, 'drawn, not one row repeated');
    const again = strategyModel('bert', mods);
    assert.deepEqual(again.values[again.indexOf('prompt.embeddings')], prompt, 'the same seed draws the same rows');
    const electra = strategyModel('electra', modifiersFor(strategy({ kind: 'prompt-tuning', length: 2 })));
    assert.deepEqual(electra.specs[electra.indexOf('prompt.embeddings')].shape, [2, 6], 'ELECTRA embeds into 6');
    electra.dispose();
    model.dispose();
    again.dispose();
  });
});
