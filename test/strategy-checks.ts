import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { initStrategyParams } from '../src/engine/checkpoint.js';
import { EncoderClassifier, type Batch, type StepExtras } from '../src/engine/model.js';
import type { ModelModifier } from '../src/engine/modules/modifier.js';
import { sizeOf } from '../src/engine/modules/param.js';
import { Rng, streamSeed } from '../src/engine/rng.js';
import { dot } from './gradient-checks.js';
import { microModel } from './helpers.js';

// Shared by the tests of the strategies that transform weights or add loss terms (mixout, r3f, diff pruning, mask
// tuning): a micro batch, models with modifiers, whole-step gradient checks, run outputs.

export const batch = (): Batch => ({
  batch: 3,
  seq: 4,
  inputIds: Int32Array.from([2, 7, 9, 3, 2, 5, 3, 0, 2, 11, 12, 3]),
  tokenTypeIds: Int32Array.from([0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]),
  attentionMask: Float32Array.from([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1]),
  labels: Float32Array.from([2, 0, 1]),
});

export const gradsOf = (m: EncoderClassifier) => m.specs.map((s) => new Float32Array(sizeOf(s)));
export { dot };

/** A micro model with modifiers, its own parameters copied from microModel, the modifiers' initialised. */
export function modified(modifiers: ModelModifier[], labels = 3) {
  const base = microModel({ labels });
  const model = new EncoderClassifier(base.config, base.numLabels, undefined, modifiers);
  base.values.forEach((v, i) => (model.values[i] = Float32Array.from(v)));
  initStrategyParams(model, 4);
  return { base, model };
}

/**
 * The step's gradient along a random direction in tensor `name` against central differences of the step's loss
 * (no dropout; `extras` builds the same draws on every call, so the loss is one smooth function of the weights).
 */
export function checkDirection(
  model: EncoderClassifier,
  name: string,
  extras: () => StepExtras,
  b = batch(),
  /** The gradient's expected multiple of the loss's derivative (a reference's rescaled backward: Mixout's 1 - p). */
  scale = 1,
) {
  const i = model.indexOf(name);
  const rng = new Rng(streamSeed(7, i));
  const dir = Float32Array.from({ length: model.values[i].length }, () => rng.normal());
  const grads = gradsOf(model);
  model.step(b, grads, null, undefined, extras());
  const analytic = dot(grads[i], dir);
  const original = Float32Array.from(model.values[i]);
  const lossAt = (t: number) => {
    for (let j = 0; j < original.length; j++) model.values[i][j] = original[j] + t * dir[j];
    model.markDirty();
    return model.step(b, gradsOf(model), null, undefined, extras()).loss;
  };
  const h = 1e-3;
  const numeric = scale * ((lossAt(h) - lossAt(-h)) / (2 * h));
  model.values[i].set(original);
  model.markDirty();
  assert.ok(
    Math.abs(analytic - numeric) <= 2e-3 * Math.max(1, Math.abs(analytic)),
    `${name}: analytic ${analytic}, numeric ${numeric}`,
  );
  return analytic;
}

/** metrics.jsonl's entries, parsed. */
export const metricsLog = (dir: string) =>
  fs
    .readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
/** metrics.jsonl without its timing field, the only thing allowed to differ between runs. */
export const metricsOf = (dir: string) => metricsLog(dir).map(({ examples_per_s: _, ...rest }) => rest);
/** The loss of every logged step, in order. */
export const lossesOf = (dir: string): number[] => metricsLog(dir).flatMap((m) => (m.kind === 'step' ? [m.loss] : []));
export const modelBytes = (dir: string) => fs.readFileSync(path.join(dir, 'model', 'model.safetensors'));
/** results.json's metrics, epochs, final loss and step count (what a rerun or a resume must reproduce). */
export const resultsOf = (dir: string) => {
  const r = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
  return { metrics: r.metrics, epochs: r.epochs, final_loss: r.final_loss, steps: r.steps };
};
