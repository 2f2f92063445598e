import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ModelConfig } from '../src/engine/config.js';
import { paramSpecs } from '../src/engine/params.js';
import { trainableOf } from '../src/plan/estimate.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { validate } from '../src/recipe/validate.generated.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import { modifiersFor } from '../src/strategies/registry.js';

/**
 * Trainable counts on BERT-base's shapes (specs only, no weights), each kind with the defaults a recipe gets,
 * against its reference implementation's count for a two-label classifier (issue 27).
 */
const BERT_BASE: ModelConfig = {
  family: 'bert',
  vocabSize: 30522,
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  intermediateSize: 3072,
  maxPositions: 512,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
  activation: 'gelu',
  hiddenDropout: 0.1,
  attentionDropout: 0.1,
  padTokenId: 0,
  embeddingSize: 768,
};
/** BERT's pooler dense layer: 768 x 768 weights and 768 biases. */
const POOLER = 768 * 768 + 768;

/** The strategy as a recipe gets it: the schema's defaults filled in. */
function withDefaults(strategy: Record<string, unknown>): Recipe['strategy'] {
  const recipe = { version: 1, model: { path: 'model' }, dataset: { task: 'glue/rte' }, strategy };
  assert.ok(validate(recipe), JSON.stringify((validate as { errors?: unknown }).errors));
  return recipe.strategy as unknown as Recipe['strategy'];
}

const trainable = (strategy: Record<string, unknown>) => {
  const s = withDefaults(strategy);
  return trainableOf(paramSpecs(BERT_BASE, 2, modifiersFor(s)), s);
};

describe('trainable parameters at BERT-base, by default, equal the reference implementations', () => {
  const cases: [string, Record<string, unknown>, number][] = [
    // benzakenelad/BitFit: every bias (the pooler's among them) and the classifier.
    ['bitfit', { kind: 'bitfit' }, 104_450],
    // PEFT, task SEQ_CLS: r 8 on query and value, modules_to_save the classifier.
    ['lora', { kind: 'lora' }, 296_450],
    // PEFT's prefix tuning, prefix_projection false: 10 key and 10 value rows per layer, and the classifier.
    ['prefix-tuning', { kind: 'prefix-tuning' }, 185_858],
    // PEFT's prompt tuning: 100 virtual tokens, and the classifier.
    ['prompt-tuning', { kind: 'prompt-tuning' }, 78_338],
    // ptlmasking/maskbert: one score per weight of K, Q, V, AO, I and O in every layer (layers_to_mask's default),
    // of the pooler and of the classifier (mask_classifier); no bias, and the classifier itself not trained.
    ['mask-tuning', { kind: 'mask-tuning' }, 12 * (4 * 768 * 768 + 2 * 768 * 3072) + 768 * 768 + 768 * 2],
    // AdapterHub's double_seq_bn (reduction 16: 48 wide, after the attention and the feed-forward), and the classifier.
    ['adapter', { kind: 'adapter' }, 24 * (768 * 48 + 48 + 48 * 768 + 768) + 1_538],
    // seq_bn: the feed-forward's adapter only.
    ['adapter pfeiffer', { kind: 'adapter', placement: 'pfeiffer' }, 896_066],
    // par_bn: reduction 2 (384 wide); scaled_par_bn adds one learned scaling per layer.
    ['adapter parallel', { kind: 'adapter', placement: 'parallel' }, 7_093_250],
    ['adapter scaled-parallel', { kind: 'adapter', placement: 'scaled-parallel' }, 7_093_262],
    // dguo98/DiffPruning run_glue_diffpruning.py: every tensor but the classifier's (BERT's 109,482,240 values in
    // 199 tensors) gets a difference and a log_alpha per value and one log_alpha per tensor; the classifier trains
    // itself (its log_alphas sit in the gates' optimizer but never get a gradient).
    ['diff-pruning', { kind: 'diff-pruning' }, 2 * 109_482_240 + 199 + 768 * 2 + 2],
  ];
  for (const [kind, strategy, want] of cases)
    test(`${kind}: ${want.toLocaleString('en-US')}`, () => {
      const t = trainable(strategy);
      assert.equal(t.parameters, want);
      assert.equal(t.effective, undefined, 'no Child-Tuning, no effective count');
    });

  test("head: pooler+classifier adds exactly the pooler's 590,592 (BitFit: its weight, the bias already trains)", () => {
    for (const kind of ['lora', 'prefix-tuning', 'prompt-tuning', 'adapter'])
      assert.equal(
        trainable({ kind, head: 'pooler+classifier' }).parameters - trainable({ kind }).parameters,
        POOLER,
        kind,
      );
    assert.equal(trainable({ kind: 'bitfit', head: 'pooler+classifier' }).parameters, 104_450 + 768 * 768);
    // Top-K: the pooler by default (the whole head above the encoder); head: classifier leaves it frozen.
    assert.equal(
      trainable({ kind: 'top-k-layers', layers: 2 }).parameters -
        trainable({ kind: 'top-k-layers', layers: 2, head: 'classifier' }).parameters,
      POOLER,
    );
  });

  test("prefix tuning's MLP stays an option, its parameters counted", () => {
    // Embedding [10, 768], a dense layer to 512, and per layer a dense layer to 2 x 768 keys and values.
    const mlp = 10 * 768 + (768 * 512 + 512) + 12 * (512 * 2 * 768 + 2 * 768);
    assert.equal(trainable({ kind: 'prefix-tuning', reparameterize: true }).parameters, mlp + 768 * 2 + 2);
  });

  test("Child-Tuning F, D and the paper's baselines keep training BERT's pooler", () => {
    const all = trainable({ kind: 'vanilla' }).parameters;
    for (const strategy of [
      { kind: 'child-tuning-f', reserve_p: 0.3 },
      { kind: 'child-tuning-d', reserve_p: 0.3 },
      { kind: 'mixout', p: 0.1 },
    ])
      assert.equal(trainable(strategy).parameters, all, strategy.kind);
    // The top 2 layers and the whole head, the pooler included.
    const layer = 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768;
    assert.equal(trainable({ kind: 'top-k-layers', layers: 2 }).parameters, 2 * layer + POOLER + 768 * 2 + 2);
  });
});

describe('Child-Tuning: the effective count beside the tensors that receive updates', () => {
  const specs = paramSpecs(BERT_BASE, 2);
  const size = (keep: (s: (typeof specs)[number]) => boolean) =>
    specs.reduce((a, s) => a + (keep(s) ? s.shape.reduce((x, y) => x * y, 1) : 0), 0);
  const total = size(() => true);
  const encoder = size((s) => s.group === 'encoder');

  test("D and F: every tensor still trains; the effective count is reserve_p of the scope's elements", () => {
    // D's default scope is the encoder (the reference's): the embeddings and the head train whole.
    const d = trainable({ kind: 'child-tuning-d', reserve_p: 0.3 });
    assert.equal(d.parameters, total);
    assert.deepEqual(d.effective, {
      parameters: total - encoder + Math.round(0.3 * encoder),
      share: (total - encoder + Math.round(0.3 * encoder)) / total,
    });
    const dAll = trainable({ kind: 'child-tuning-d', reserve_p: 0.0025, fisher: { scope: 'all' } });
    assert.equal(dAll.effective!.parameters, Math.round(0.0025 * total));
    // F's default scope is all.
    assert.equal(trainable({ kind: 'child-tuning-f', reserve_p: 0.3 }).effective!.parameters, Math.round(0.3 * total));
  });

  test("inside another kind: reserve_p of that kind's trainable tensors in scope, the classifier whole", () => {
    const lora = 12 * 2 * 2 * 8 * 768;
    const t = trainable({ kind: 'lora', child_tuning: { kind: 'child-tuning-d', reserve_p: 0.3 } });
    assert.equal(t.parameters, 296_450);
    assert.equal(t.effective!.parameters, Math.round(0.3 * lora) + 768 * 2 + 2);
  });

  test("results.json's fields: the tensors' count, and the effective count where Child-Tuning masks", () => {
    const f = childTuningF(0.3, 'encoder', specs, 1);
    assert.deepEqual(f.trainable(specs, withDefaults({ kind: 'child-tuning-f', reserve_p: 0.3, scope: 'encoder' })), {
      trainable_parameters: total,
      trainable_share: 1,
      effective_trainable_parameters: total - encoder + Math.round(0.3 * encoder),
      effective_trainable_share: (total - encoder + Math.round(0.3 * encoder)) / total,
    });
  });
});
