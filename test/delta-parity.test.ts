import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import type { Batch } from '../src/engine/model.js';
import { adamwRange, adamwStep } from '../src/engine/optimizer.js';
import type { ParamSpec } from '../src/engine/params.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { modifiersFor } from '../src/strategies/registry.js';
import { REPO } from './helpers.js';

/**
 * Parity with an independent PyTorch implementation for the delta-tuning family (issue 16): the fixture in
 * test/fixtures/delta was computed once by make_reference.py (float64) and is committed, so no test needs PyTorch.
 * The 'base' case (head-only training on the frozen encoder) checks the fixture's model and optimizer semantics
 * against the engine; the LoRA case runs through the lora strategy (its modifiers as a recipe builds them); the
 * adapter and prefix cases are checked by their strategies' tests.
 */
const DIR = path.join(REPO, 'test', 'fixtures', 'delta');
const reference = JSON.parse(fs.readFileSync(path.join(DIR, 'reference.json'), 'utf8'));
const TOLERANCE = 1e-4;

function referenceBatch(): Batch {
  const b = reference.batch;
  return {
    batch: b.input_ids.length,
    seq: b.input_ids[0].length,
    inputIds: Int32Array.from(b.input_ids.flat()),
    tokenTypeIds: Int32Array.from(b.token_type_ids.flat()),
    attentionMask: Float32Array.from(b.attention_mask.flat()),
    labels: Float32Array.from(b.labels),
  };
}

/** A parameter in the checkpoint's layout ([out, in] for dense weights), whatever the engine's internal layout. */
function checkpointLayout(spec: ParamSpec, values: Float32Array): Float32Array {
  if (!spec.transposed) return values;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(values.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[o * inDim + i] = values[i * out + o];
  return t;
}

function assertClose(actual: ArrayLike<number>, expected: readonly number[], what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= TOLERANCE, `${what}: largest difference ${worst} > ${TOLERANCE}`);
}

/** A parameter given in the checkpoint's layout ([out, in]), in the engine's ([in, out] for transposed specs). */
function engineLayout(spec: ParamSpec, values: readonly number[]): Float32Array {
  if (!spec.transposed) return Float32Array.from(values);
  const [out, inDim] = spec.shape;
  const t = new Float32Array(values.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[i * out + o] = values[o * inDim + i];
  return t;
}

/** Logits, loss, every trainable gradient and one AdamW step of a loaded model against a fixture case. */
function checkCase(model: ReturnType<typeof loadPretrained>['model'], expected: Record<string, any>) {
  const batch = referenceBatch();
  assertClose(model.predict(batch).logits, expected.logits, 'logits');
  const grads = model.values.map((v) => new Float32Array(v.length));
  const { loss } = model.step(batch, grads, null);
  assert.ok(Math.abs(loss - expected.loss) <= TOLERANCE, `loss ${loss} against ${expected.loss}`);
  const settings = reference.adamw;
  const adam = adamwStep(
    { lr: settings.lr, betas: settings.betas, eps: settings.eps, weightDecay: settings.weight_decay },
    1,
    settings.lr,
  );
  for (const name of expected.trainable as string[]) {
    const i = model.indexOf(name);
    const spec = model.specs[i];
    assertClose(checkpointLayout(spec, grads[i]), expected.grads[name], `gradient of ${name}`);
    assert.equal(
      spec.decay,
      (expected.decay as string[]).includes(name),
      `${name}: decayed as the reference decays it`,
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
    assertClose(checkpointLayout(spec, values), expected.after_step[name], `${name} after one AdamW step`);
  }
}

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`delta-tuning parity fixture on ${backend}`, () => {
    before(async () => {
      await selectBackend(backend);
    });

    test('base case: logits, loss, head gradients and one AdamW step equal the PyTorch reference', () => {
      const { model } = loadPretrained(DIR, { numLabels: 2, seed: 1 });
      checkCase(model, reference.cases.base);
      model.dispose();
    });

    test('lora case through the lora strategy: logits, loss, every trainable gradient and one AdamW step', () => {
      const expected = reference.cases.lora;
      const s = expected.settings;
      const options = {
        kind: 'lora',
        r: s.r,
        alpha: s.alpha,
        dropout: 0,
        target_modules: s.target_modules,
        save: 'merged',
      };
      const { model } = loadPretrained(DIR, {
        numLabels: 2,
        seed: 1,
        modifiers: modifiersFor(options as Recipe['strategy']),
      });
      // Only the strategy's parameters and the head train; no gradient is computed for a pretrained weight.
      assert.deepEqual(
        model.specs
          .filter((p) => p.trainable)
          .map((p) => p.name)
          .sort(),
        [...expected.trainable].sort(),
      );
      for (const [name, { values }] of Object.entries(expected.params as Record<string, { values: number[] }>)) {
        const i = model.indexOf(name);
        model.values[i] = engineLayout(model.specs[i], values);
      }
      model.markDirty();
      checkCase(model, expected);
      model.dispose();
    });
  });
}
