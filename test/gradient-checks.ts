import assert from 'node:assert/strict';
import type { Batch, EncoderClassifier } from '../src/engine/model.js';
import { sizeOf } from '../src/engine/modules/param.js';
import { Rng } from '../src/engine/rng.js';

// Finite-difference checks shared by the module and strategy tests.

export const random = (rng: Rng, n: number, scale = 1) => Float32Array.from({ length: n }, () => rng.normal() * scale);

export const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** A float32 step's gradient against central differences: within 1% relative plus 1e-4 absolute. */
export function assertGradClose(what: string, analytic: number, numeric: number) {
  assert.ok(
    Math.abs(numeric - analytic) <= 1e-2 * Math.max(Math.abs(numeric), Math.abs(analytic)) + 1e-4,
    `${what}: analytic ${analytic} vs numeric ${numeric}`,
  );
}

/**
 * Every trainable parameter's gradient from one step on `b` (dropout from one fixed stream), along a random
 * direction, against central differences of the step's loss; a frozen parameter's buffer must stay unwritten.
 * Returns how many parameters were checked.
 */
export function checkModelGradients(model: EncoderClassifier, b: Batch): number {
  const grads = model.specs.map((s) => new Float32Array(sizeOf(s)).fill(Number.NaN));
  const lossAt = () =>
    model.step(
      b,
      model.specs.map((s) => new Float32Array(sizeOf(s))),
      new Rng(5),
    ).loss;
  model.step(b, grads, new Rng(5));
  const probe = new Rng(9);
  let checked = 0;
  model.specs.forEach((spec, i) => {
    if (!spec.trainable) {
      assert.ok(grads[i].every(Number.isNaN), `frozen ${spec.name} was written`);
      return;
    }
    const v = random(probe, model.values[i].length);
    const orig = model.values[i];
    const eps = 3e-3;
    model.values[i] = orig.map((w, j) => w + eps * v[j]);
    model.markDirty();
    const up = lossAt();
    model.values[i] = orig.map((w, j) => w - eps * v[j]);
    model.markDirty();
    const down = lossAt();
    model.values[i] = orig;
    model.markDirty();
    assertGradClose(spec.name, dot(grads[i], v), (up - down) / (2 * eps));
    checked++;
  });
  return checked;
}
