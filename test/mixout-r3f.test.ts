import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { squaredDifference, symmetricKl } from '../src/engine/consistency.js';
import type { StepExtras } from '../src/engine/model.js';
import { Rng, streamSeed } from '../src/engine/rng.js';
import { modifiersFor } from '../src/strategies/registry.js';
import { STREAMS } from '../src/strategies/strategy.js';
import { mixoutModifier } from '../src/strategies/mixout/mixout-dense.js';
import { cli, GLUE, killAndResume, microModel, tinyModel, tmpProject, write } from './helpers.js';
import { batch, checkDirection, gradsOf, metricsOf, modelBytes, modified } from './strategy-checks.js';

describe('mixout', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const mixout = (p: number, mask: 'per-input' | 'per-element' = 'per-input', keepDropout = false) =>
    mixoutModifier({ p, mask, keepDropout, roles: ['head-out'], stream: STREAMS.mixout });

  for (const mask of ['per-input', 'per-element'] as const)
    test(`${mask}: the mixed weight is the reference's ((1 - B) u + B w - p u) / (1 - p), B drawn once per step and weight`, () => {
      const p = 0.5;
      const { base, model } = modified([mixout(p, mask)]);
      const name = 'classifier.weight';
      const i = model.indexOf(name);
      const target = model.values[model.indexOf(`classifier${'.mixout_target'}`)];
      assert.deepEqual(target, base.values[i], 'the target is a copy of the weight as loaded');
      assert.equal(model.specs[model.indexOf('classifier.mixout_target')].trainable, false);
      // Move the weight away from its target, then mix by hand with the step's draws: the engine holds the weight
      // as [in, out], so per input neuron is one draw per row (the reference's column of its [out, in] weight).
      const rng = new Rng(3);
      for (let j = 0; j < model.values[i].length; j++) model.values[i][j] += rng.normal() * 0.5;
      const seed = 1234;
      const outputs = model.specs[i].shape[0];
      const draws = mask === 'per-input' ? model.values[i].length / outputs : model.values[i].length;
      const keep = new Rng(streamSeed(seed, STREAMS.mixout, i)).dropoutMask(draws, p);
      const bitOf = (j: number) => (keep[mask === 'per-input' ? Math.floor(j / outputs) : j] > 0 ? 1 : 0);
      const mixed = model.values[i].map(
        (w, j) => ((1 - bitOf(j)) * target[j] + bitOf(j) * w - p * target[j]) / (1 - p),
      );
      assert.ok(keep.some((k) => k === 0) && keep.some((k) => k > 0), 'some mixed, some kept');
      base.values[i].set(mixed);
      base.markDirty();
      const viaMixout = model.step(batch(), gradsOf(model), null, undefined, { seed }).loss;
      const byHand = base.step(batch(), gradsOf(base), null).loss;
      assert.ok(Math.abs(viaMixout - byHand) < 1e-6, `${viaMixout} vs ${byHand}`);
      // The reference's backward: the plain gradient (by the mixed weight) times B, not divided by 1 - p.
      const [g, plain] = [gradsOf(model), gradsOf(base)];
      model.step(batch(), g, null, undefined, { seed });
      base.step(batch(), plain, null);
      g[i].forEach((v, j) => assert.ok(Math.abs(v - bitOf(j) * plain[i][j]) < 1e-7, `${v} vs ${plain[i][j]}`));
      // Predicting uses the weight itself (the mixture's expectation).
      assert.notDeepEqual(model.predict(batch()).logits, base.predict(batch()).logits);
      base.dispose();
      model.dispose();
    });

  test("finite differences: the mixed weights' gradient is 1 - p times the loss's derivative (the reference's backward), the rest exact", () => {
    const p = 0.3;
    const { base, model } = modified(
      modifiersFor({
        kind: 'mixout',
        p,
        mask: 'per-input',
        keep_dropout: false,
        target_modules: ['query', 'intermediate', 'head-out'],
      } as never),
    );
    const rng = new Rng(5);
    for (const name of ['bert.encoder.layer.0.attention.self.query.weight', 'classifier.weight'])
      model.values[model.indexOf(name)].forEach((_, j, v) => (v[j] += rng.normal() * 0.3));
    for (const name of [
      'bert.encoder.layer.0.attention.self.query.weight',
      'bert.encoder.layer.1.intermediate.dense.weight',
      'classifier.weight',
    ])
      checkDirection(model, name, () => ({ seed: 99 }), batch(), 1 - p);
    for (const name of ['bert.encoder.layer.1.output.dense.weight', 'bert.embeddings.word_embeddings.weight'])
      checkDirection(model, name, () => ({ seed: 99 }));
    base.dispose();
    model.dispose();
  });

  test("by default every dropout is off (the reference example); keep_dropout drops only the mixed head input's", () => {
    // Weights equal to their targets: mixing changes nothing, so only the dropout can make the steps differ.
    const { base, model } = modified([mixout(0.5)]);
    const plain = base.step(batch(), gradsOf(base), null).loss;
    assert.equal(model.step(batch(), gradsOf(model), null, undefined, { seed: 1 }).loss, plain);
    assert.equal(model.step(batch(), gradsOf(model), new Rng(8), undefined, { seed: 1 }).loss, plain);
    model.dispose();
    const { model: keeping } = modified([mixout(0.5, 'per-input', true)]);
    const dropped = base.step(batch(), gradsOf(base), new Rng(8)).loss;
    const mixed = keeping.step(batch(), gradsOf(keeping), new Rng(8), undefined, { seed: 1 }).loss;
    assert.notEqual(mixed, dropped, 'the head dropout before the output layer is gone');
    // The encoder's dropout stays: with it the loss differs from the dropout-free one.
    assert.notEqual(mixed, plain);
    base.dispose();
    keeping.dispose();
  });

  test('at p = 0 a step draws nothing and equals the plain model bit for bit', () => {
    const { base, model } = modified(
      modifiersFor({ kind: 'mixout', p: 0, target_modules: ['query', 'head-out'] } as never),
    );
    const [g1, g2] = [gradsOf(base), gradsOf(model)];
    const l1 = base.step(batch(), g1, new Rng(8)).loss;
    const l2 = model.step(batch(), g2, new Rng(8), undefined, { seed: 5 }).loss;
    assert.equal(l2, l1);
    base.specs.forEach((_, i) => assert.deepEqual(g2[i], g1[i]));
    base.dispose();
    model.dispose();
  });
});

describe('r3f consistency term', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const randomScores = (n: number, seed: number) => {
    const rng = new Rng(seed);
    return Float32Array.from({ length: n }, () => rng.normal() * 2);
  };

  test('symmetric KL: its value by the definition, its gradients by central differences', () => {
    const k = 3;
    const [a, b] = [randomScores(12, 1), randomScores(12, 2)];
    const softmax = (x: Float32Array, r: number) => {
      const e = [0, 1, 2].map((j) => Math.exp(x[r * k + j]));
      const z = e.reduce((s, v) => s + v, 0);
      return e.map((v) => v / z);
    };
    let expected = 0;
    for (let r = 0; r < 4; r++) {
      const [p, q] = [softmax(a, r), softmax(b, r)];
      for (let j = 0; j < k; j++) expected += p[j] * Math.log(p[j] / q[j]) + q[j] * Math.log(q[j] / p[j]);
    }
    const d = symmetricKl(a, b, k);
    assert.ok(Math.abs(d.value - expected / 4) < 1e-6, `${d.value} vs ${expected / 4}`);
    for (const [which, x, g] of [
      ['clean', a, d.dclean],
      ['noisy', b, d.dnoisy],
    ] as const) {
      for (let j = 0; j < x.length; j++) {
        const original = x[j];
        const h = 1e-2;
        x[j] = original + h;
        const up = symmetricKl(a, b, k).value;
        x[j] = original - h;
        const down = symmetricKl(a, b, k).value;
        x[j] = original;
        const numeric = (up - down) / (2 * h);
        assert.ok(Math.abs(g[j] - numeric) < 1e-4, `${which}[${j}]: ${g[j]} vs ${numeric}`);
      }
    }
    assert.equal(symmetricKl(a, a, k).value, 0);
  });

  test('squared difference (regression): value and gradients', () => {
    const [a, b] = [randomScores(4, 3), randomScores(4, 4)];
    const d = squaredDifference(a, b);
    const expected = [0, 1, 2, 3].reduce((s, i) => s + (a[i] - b[i]) ** 2, 0) / 4;
    assert.ok(Math.abs(d.value - expected) < 1e-6);
    [0, 1, 2, 3].forEach((i) => {
      assert.ok(Math.abs(d.dclean[i] - (a[i] - b[i]) / 2) < 1e-6);
      assert.equal(d.dnoisy[i], -d.dclean[i]);
    });
  });

  test('finite differences: the whole step with the term, through both passes into the embeddings', () => {
    for (const labels of [3, 1]) {
      const model = microModel({ labels });
      const extras = (noisyWordGradient: boolean) => (): StepExtras => ({
        consistency: { term: { weight: 4, noise: 'normal', sigma: 0.5, noisyWordGradient }, noise: new Rng(11) },
      });
      const words = 'bert.embeddings.word_embeddings.weight';
      const withTerm = checkDirection(model, words, extras(true));
      const without = checkDirection(model, words, () => ({}));
      assert.ok(Math.abs(withTerm - without) > 1e-4, `the term moves the embeddings' gradient (${labels} labels)`);
      // fairseq's default: the noisy pass's word embeddings are detached, so the table's gradient is not the
      // objective's (no finite difference to check it against) and differs from it; every other tensor's still is.
      const [full, detached] = [true, false].map((flag) => {
        const g = gradsOf(model);
        model.step(batch(), g, null, undefined, extras(flag)());
        return g[model.indexOf(words)];
      });
      assert.ok(
        detached.some((v, j) => Math.abs(v - full[j]) > 1e-6),
        `the noisy pass reaches the words only with noisyWordGradient (${labels} labels)`,
      );
      for (const name of [
        'bert.encoder.layer.0.attention.self.key.weight',
        'bert.embeddings.LayerNorm.weight',
        'bert.embeddings.position_embeddings.weight',
        labels === 1 ? 'classifier.weight' : 'bert.pooler.dense.weight',
      ])
        for (const flag of [true, false]) checkDirection(model, name, extras(flag));
      model.dispose();
    }
  });

  test('uniform noise stays in [-sigma, sigma]; a zero weight runs no second pass and changes nothing', () => {
    const model = microModel();
    const [g1, g2] = [gradsOf(model), gradsOf(model)];
    const l1 = model.step(batch(), g1, new Rng(2)).loss;
    const noise = new Rng(1);
    const before = noise.state;
    const l2 = model.step(batch(), g2, new Rng(2), undefined, {
      seed: 3,
      consistency: { term: { weight: 0, noise: 'uniform', sigma: 1e-5, noisyWordGradient: false }, noise },
    }).loss;
    assert.equal(l2, l1);
    g1.forEach((g, i) => assert.deepEqual(g2[i], g));
    assert.deepEqual(noise.state, before, 'no noise drawn');
    model.dispose();
  });
});

describe('mixout and r3f runs (2 threads)', () => {
  const project = tmpProject();
  const allow = ['--allow-path', path.dirname(GLUE)];
  const body = (strategy: string, extra = '') => `version: 1
model: {path: ./model, max_seq_length: 32}
dataset:
  task: glue/rte
  dir: ${path.join(GLUE, 'RTE')}
  subsample: {size: 24, seed: 0}
strategy: ${strategy}
training: {epochs: 2, batch_size: 8, log_every: 1, checkpoint_every: 1}
evaluation: {batch_size: 128}
runtime: {threads: 2}
${extra}`;

  before(async () => {
    await tinyModel(path.join(project, 'model'));
  });

  test('in a sweep: mixout at p = 0 and r3f at lambda = 0 train exactly as vanilla; p = 0.5 and lambda = 1 do not', async () => {
    const recipe = write(
      project,
      'sweep.yaml',
      body(
        '{kind: vanilla}',
        `sweep:
  grid:
    strategy: [{kind: vanilla}, {kind: mixout, p: 0}, {kind: r3f, lambda: 0}, {kind: mixout, p: 0.5}, {kind: r3f}]
`,
      ),
    );
    const r = await cli(['sweep', recipe, '--json', '--quiet', ...allow]);
    assert.equal(r.code, 0, r.err);
    const trials = JSON.parse(r.out) as { dir: string; strategy: string; trainable_parameters: number }[];
    const [vanilla, mixout0, r3f0, mixout, r3f] = trials.map((t) => t.dir);
    assert.deepEqual(metricsOf(mixout0), metricsOf(vanilla));
    assert.deepEqual(metricsOf(r3f0), metricsOf(vanilla));
    assert.deepEqual(modelBytes(r3f0), modelBytes(vanilla));
    assert.notDeepEqual(metricsOf(mixout), metricsOf(vanilla));
    assert.notDeepEqual(metricsOf(r3f), metricsOf(vanilla));
    // Mixout's frozen pretrained copies do not count as trainable.
    assert.equal(trials[1].trainable_parameters, trials[0].trainable_parameters);
    const mixed = JSON.parse(fs.readFileSync(path.join(mixout, 'results.json'), 'utf8'));
    assert.deepEqual(
      [mixed.mixout_mask, mixed.mixout_keep_dropout],
      ['per-input', false],
      "the reference's by default",
    );
    const results = JSON.parse(fs.readFileSync(path.join(r3f, 'results.json'), 'utf8'));
    assert.equal(results.r3f_lambda, 1);
    assert.equal(results.r3f_sigma, 1e-5);
    assert.equal(results.r3f_noise, 'uniform');
  });

  for (const strategy of ['{kind: mixout, p: 0.7}', '{kind: r3f, lambda: 2, noise: normal, sigma: 0.001}'])
    test(`${strategy}: a run killed with SIGKILL resumes bit-identical to an uninterrupted one`, async () => {
      const recipe = write(project, 'run.yaml', body(strategy));
      const whole = await cli(['run', recipe, '--json', '--quiet', ...allow]);
      assert.equal(whole.code, 0, whole.err);
      const reference = JSON.parse(whole.out)[0].dir;
      const killAt = 2 + new Rng(Date.now()).int(3);
      const runDir = await killAndResume(recipe, killAt, allow);
      assert.deepEqual(metricsOf(runDir), metricsOf(reference));
      assert.deepEqual(modelBytes(runDir), modelBytes(reference));
    });
});
