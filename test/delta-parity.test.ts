import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import { adamwRange, adamwStep } from '../src/engine/optimizer.js';
import type { ModelModifier } from '../src/engine/modules/modifier.js';
import type { ParamSpec } from '../src/engine/params.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { modifiersFor } from '../src/strategies/registry.js';
import { DELTA_DIR, deltaBatch, deltaReference } from './delta-fixture.js';

/**
 * Parity with an independent PyTorch implementation for the delta-tuning family (issue 16): the fixture in
 * test/fixtures/delta was computed once by make_reference.py (float64) and is committed, so no test needs PyTorch.
 * The 'base' case (head-only training on the frozen encoder) checks the fixture's model and optimizer semantics
 * against the engine; the LoRA, adapter and prefix cases run through the lora, adapter and prefix-tuning strategies'
 * modifiers.
 */
const TOLERANCE = 1e-4;

/** A parameter in the checkpoint's layout ([out, in] for dense weights), whatever the engine's internal layout. */
function checkpointLayout(spec: ParamSpec, values: Float32Array): Float32Array {
  if (!spec.transposed) return values;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(values.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[o * inDim + i] = values[i * out + o];
  return t;
}

/** The inverse of checkpointLayout: a saved [out, in] dense weight in the engine's [in, out]. */
function engineLayout(spec: ParamSpec, values: Float32Array): Float32Array {
  if (!spec.transposed) return values;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(values.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[i * out + o] = values[o * inDim + i];
  return t;
}

function assertClose(actual: ArrayLike<number>, expected: readonly number[], what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= TOLERANCE, `${what}: largest difference ${worst} > ${TOLERANCE}`);
}

/**
 * The fixture's cases through childtune's strategies, with options that make each strategy's trainable set the
 * fixture's (it trains BERT's pooler beside the classifier: head pooler+classifier).
 */
const STRATEGY_CASES: Record<string, Recipe['strategy']> = {
  lora: {
    kind: 'lora',
    r: 4,
    alpha: 8,
    dropout: 0,
    target_modules: ['query', 'value'],
    save: 'merged',
    head: 'pooler+classifier',
  } as Recipe['strategy'],
  // Houlsby et al. also train the encoder's LayerNorms (the strategy's default for houlsby); the fixture does not.
  'adapter-houlsby': {
    kind: 'adapter',
    placement: 'houlsby',
    bottleneck: 8,
    nonlinearity: 'relu',
    train_layer_norms: false,
    head: 'pooler+classifier',
  } as Recipe['strategy'],
  // The fixture's prefixes are the parameters themselves (the strategy's default, PEFT's).
  prefix: { kind: 'prefix-tuning', length: 3, head: 'pooler+classifier' } as Recipe['strategy'],
};

/**
 * Logits, loss, the gradient of every trainable parameter and one AdamW step against the case's reference; the
 * strategy's parameters are set to the fixture's values first.
 */
function checkCase(name: string, modifiers: ModelModifier[]) {
  const expected = deltaReference.cases[name];
  const { model } = loadPretrained(DELTA_DIR, { numLabels: 2, seed: 1, modifiers });
  for (const [param, { values }] of Object.entries(expected.params as Record<string, { values: number[] }>)) {
    const i = model.indexOf(param);
    model.values[i] = engineLayout(model.specs[i], Float32Array.from(values));
  }
  model.markDirty();
  // Without a strategy the engine trains every parameter; the base case compares the head's (the fixture's set).
  if (modifiers.length)
    assert.deepEqual(
      model.specs
        .filter((s) => s.trainable)
        .map((s) => s.name)
        .sort(),
      [...(expected.trainable as string[])].sort(),
      "the trainable set is the fixture's",
    );
  const batch = deltaBatch();
  assertClose(model.predict(batch).logits, expected.logits, 'logits');

  const grads = model.values.map((v) => new Float32Array(v.length));
  const { loss } = model.step(batch, grads, null);
  assert.ok(Math.abs(loss - expected.loss) <= TOLERANCE, `loss ${loss} against ${expected.loss}`);

  const settings = deltaReference.adamw;
  const adam = adamwStep(
    { lr: settings.lr, betas: settings.betas, eps: settings.eps, weightDecay: settings.weight_decay },
    1,
    settings.lr,
  );
  for (const param of expected.trainable as string[]) {
    const i = model.indexOf(param);
    const spec = model.specs[i];
    assertClose(checkpointLayout(spec, grads[i]), expected.grads[param], `gradient of ${param}`);
    assert.equal(
      spec.decay,
      (expected.decay as string[]).includes(param),
      `${param}: decayed as the reference decays it`,
    );
    const values = Float32Array.from(model.values[i]);
    const n = values.length;
    adamwRange(
      values,
      grads[i],
      new Float32Array(n),
      new Float32Array(n),
      0,
      n,
      spec.decay ? adam : { ...adam, decay: 0 },
    );
    assertClose(checkpointLayout(spec, values), expected.after_step[param], `${param} after one AdamW step`);
  }
  model.dispose();
}

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`delta-tuning parity fixture on ${backend}`, () => {
    before(async () => {
      await selectBackend(backend);
    });

    test('base case: logits, loss, head gradients and one AdamW step equal the PyTorch reference', () => {
      checkCase('base', []);
    });

    for (const [name, options] of Object.entries(STRATEGY_CASES))
      test(`${name} through the ${options.kind} strategy: logits, loss, every trainable gradient and one AdamW step`, () => {
        checkCase(name, modifiersFor(options));
      });
  });
}
