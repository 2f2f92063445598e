import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { selectBackend } from '../src/engine/backend.js';
import { EncoderClassifier } from '../src/engine/model.js';
import { trains } from '../src/engine/modules/param.js';
import { Rng, streamSeed } from '../src/engine/rng.js';
import * as tf from '@tensorflow/tfjs-core';
import { hardConcreteGates } from '../src/engine/kernels.js';
import {
  expectedL0,
  gateConstants,
  LOWER,
  testGates,
  U_MAX,
  U_MIN,
  UPPER,
} from '../src/strategies/diff-pruning/hard-concrete.js';
import { mergeDiffs } from '../src/strategies/diff-pruning/save.js';
import { applyMasks } from '../src/strategies/mask-tuning/save.js';
import { definitionOf, modifiersFor } from '../src/strategies/registry.js';
import { adamwStep } from '../src/engine/optimizer.js';
import { cli, GLUE, killAndResume, REPO, tinyModel, tmpProject, write } from './helpers.js';
import { batch, checkDirection, dot, gradsOf, metricsOf, modelBytes, modified } from './strategy-checks.js';

const QUERY = 'bert.encoder.layer.0.attention.self.query';
const OUTPUT = 'bert.encoder.layer.1.output.dense';

/** A plain model (no modifiers) with the given values for the model's own tensors. */
function plainWith(model: EncoderClassifier, weights: readonly Float32Array[]) {
  const plain = new EncoderClassifier(model.config, model.numLabels);
  plain.specs.forEach((_, i) => (plain.values[i] = Float32Array.from(weights[i])));
  return plain;
}

/** The engine's gates for `logAlpha` as plain arrays: training with 32-bit draws, test-time without. */
function gatesOf(logAlpha: Float32Array, draws: Uint32Array | null, lambda = 0) {
  const out = hardConcreteGates(tf.tensor(logAlpha), draws, gateConstants(lambda));
  const [z, dz, penalty] = [out.z, out.dz, out.penalty].map((t) => t.dataSync() as Float32Array);
  tf.dispose([out.z, out.dz, out.penalty]);
  return { z, dz, penalty };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe('hard-concrete gates', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  test("test-time gates are the reference's stretched, clamped sigmoid; training gates lie in [0, 1] with exact zeros and ones", () => {
    assert.deepEqual([LOWER, UPPER], [-1.5, 1.5]);
    const logAlpha = Float32Array.from([-6, -1, 0, 0.5, 6, 2, -3, 1]);
    const expected = [...logAlpha].map((a) => Math.min(1, Math.max(0, (UPPER - LOWER) * sigmoid(a) + LOWER)));
    for (const z of [gatesOf(logAlpha, null).z, testGates(logAlpha)]) {
      z.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `${v} vs ${expected[i]}`));
      assert.equal(z[0], 0);
      assert.equal(z[4], 1);
    }
    const test = gatesOf(logAlpha, null, 0.5);
    assert.ok(test.dz.every((v) => v === 0) && test.penalty.every((v) => v === 0), 'no gradients at test time');
    const drawn = gatesOf(new Float32Array(2000), new Rng(1).u32s(2000)).z;
    assert.ok(drawn.every((v) => v >= 0 && v <= 1));
    assert.ok(drawn.some((v) => v === 0) && drawn.some((v) => v === 1) && drawn.some((v) => v > 0 && v < 1));
  });

  test("training gates are the reference's formula, sigmoid(log_alpha + log u - log(1 - u)) stretched and clamped, on the wasm kernel and on tfjs ops alike", () => {
    const n = 4000;
    const rng = new Rng(3);
    const logAlpha = Float32Array.from({ length: n + 1 }, () => rng.normal() * 4);
    const draws = Uint32Array.from(new Rng(5).u32s(n + 1));
    // Float32 uniforms as the reference's torch.rand, clamped to [1e-4, 1 - 1e-4] (some draws past both ends).
    draws.set([0, 4294967295, 1000, 4294966000], 0);
    const [lo, hi] = [Math.fround(U_MIN), Math.fround(U_MAX)];
    const u = Array.from(draws, (r) => Math.min(hi, Math.max(lo, Math.fround(r / 2 ** 32))));
    assert.deepEqual(u.slice(0, 4), [lo, hi, lo, hi]);
    // n elements take the one-pass kernel, n + 1 (not a multiple of 4) the tfjs ops.
    const [kernel, ops] = [gatesOf(logAlpha.subarray(0, n), draws.subarray(0, n), 0.5), gatesOf(logAlpha, draws, 0.5)];
    for (let i = 0; i < n; i++) {
      const s = sigmoid(logAlpha[i] + Math.log(u[i]) - Math.log(1 - u[i]));
      const stretched = s * (UPPER - LOWER) + LOWER;
      const z = Math.min(1, Math.max(0, stretched));
      const p = sigmoid(logAlpha[i]);
      for (const [name, got] of [
        ['kernel', kernel],
        ['ops', ops],
      ] as const) {
        assert.ok(Math.abs(got.z[i] - z) < 1e-6, `${name} z[${i}]: ${got.z[i]} vs ${z}`);
        if (stretched > 1e-5 && stretched < 1 - 1e-5)
          assert.ok(Math.abs(got.dz[i] - (UPPER - LOWER) * s * (1 - s)) < 1e-6, `${name} dz[${i}]`);
        else if (stretched < -1e-5 || stretched > 1 + 1e-5) assert.equal(got.dz[i], 0, `${name} dz[${i}] outside`);
        assert.ok(Math.abs(got.penalty[i] - 0.5 * p * (1 - p)) < 1e-7, `${name} penalty[${i}]`);
      }
    }
  });

  test('finite differences: dz/dlog_alpha under fixed noise, and the expected L0 penalty', () => {
    const logAlpha = Float32Array.from({ length: 52 }, (_, i) => -3 + i * 0.12);
    const draws = Uint32Array.from(new Rng(4).u32s(logAlpha.length));
    const { z, dz, penalty } = gatesOf(logAlpha, draws, 2);
    const h = 1e-2;
    let checked = 0;
    logAlpha.forEach((_, i) => {
      const at = (t: number) =>
        gatesOf(
          Float32Array.from(logAlpha, (v, j) => (j === i ? v + t : v)),
          draws,
        ).z[i];
      const numeric = (at(h) - at(-h)) / (2 * h);
      if (z[i] > 0.05 && z[i] < 0.95) {
        assert.ok(Math.abs(dz[i] - numeric) < 2e-3, `z'[${i}]: ${dz[i]} vs ${numeric}`);
        checked++;
      } else if (z[i] === 0 || z[i] === 1) assert.equal(dz[i], 0);
      const l0 = (t: number) => expectedL0(Float32Array.from(logAlpha, (v, j) => (j === i ? v + t : v)));
      const numericL0 = (2 * (l0(h) - l0(-h))) / (2 * h);
      assert.ok(Math.abs(penalty[i] - numericL0) < 2e-3, `L0'[${i}]: ${penalty[i]} vs ${numericL0}`);
    });
    assert.ok(checked > 10, `${checked} gates inside the clamp`);
  });
});

describe('diff pruning', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const diffModel = (lambda: number, alphaInit = 0) =>
    modified(
      modifiersFor({
        kind: 'diff-pruning',
        lambda,
        alpha_init: alphaInit,
        gated_tensors: 'target_modules',
        target_modules: ['query', 'output', 'head-dense'],
      } as never),
    );

  test('starts at the pretrained model, trains only its differences, gates and the classifier; saving merges', () => {
    const { base, model } = diffModel(0, 5);
    assert.equal(
      model.step(batch(), gradsOf(model), null, undefined, { seed: 3 }).loss,
      base.step(batch(), gradsOf(base), null).loss,
    );
    const trained = model.specs.filter(trains).map((s) => s.name);
    assert.ok(trained.includes('classifier.weight') && trained.includes('classifier.bias'));
    assert.ok(
      trained.includes(`${QUERY}.weight.diff_pruning.delta`) &&
        trained.includes(`${QUERY}.weight.diff_pruning.log_alpha`),
    );
    // The reference gates every tensor it changes, biases too, and each tensor as a whole.
    for (const suffix of ['delta', 'log_alpha', 'tensor_log_alpha'])
      assert.ok(trained.includes(`${QUERY}.bias.diff_pruning.${suffix}`), suffix);
    assert.deepEqual(model.specs[model.indexOf(`${QUERY}.weight.diff_pruning.tensor_log_alpha`)].shape, [1]);
    assert.ok(!trained.includes(`${QUERY}.weight`) && !trained.includes(`${QUERY}.bias`));
    assert.ok(!trained.includes('bert.embeddings.word_embeddings.weight'));
    // Some differences, some gates closed: the merged plain model predicts as the diff model does at test time.
    const rng = new Rng(6);
    model.specs.forEach((s, i) => {
      if (s.name.endsWith('.delta')) model.values[i].forEach((_, j, v) => (v[j] = rng.normal() * 0.3));
      if (s.name.endsWith('.log_alpha')) model.values[i].forEach((_, j, v) => (v[j] = rng.normal() * 3));
      if (s.name.endsWith('.tensor_log_alpha')) model.values[i][0] = s.name.includes('layer.1') ? -1 : 1;
    });
    model.markDirty();
    const { weights, kept } = mergeDiffs(model);
    assert.ok(kept.fraction > 0.2 && kept.fraction < 0.9, `kept ${kept.fraction}`);
    const plain = plainWith(model, weights);
    const [a, b] = [model.predict(batch()).logits, plain.predict(batch()).logits];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-5, `${v} vs ${b[i]}`));
    [base, model, plain].forEach((m) => m.dispose());
  });

  test("by default every tensor but the classifier's is gated, embedding tables and LayerNorms too, as the reference", () => {
    const { base, model } = modified(
      modifiersFor({ kind: 'diff-pruning', lambda: 0, alpha_init: 5, gated_tensors: 'all' } as never),
    );
    const own = base.specs.map((s) => s.name);
    const trained = new Set(model.specs.filter(trains).map((s) => s.name));
    for (const name of own)
      if (name.startsWith('classifier.')) assert.ok(trained.has(name), name);
      else {
        assert.ok(!trained.has(name), `${name} is frozen`);
        for (const suffix of ['delta', 'log_alpha', 'tensor_log_alpha'])
          assert.ok(trained.has(`${name}.diff_pruning.${suffix}`), `${name}: ${suffix}`);
      }
    // Differences in the tables (read on the host) and the LayerNorms change the model; merged, it predicts the same.
    const rng = new Rng(7);
    model.specs.forEach((s, i) => {
      if (s.name.endsWith('.delta')) model.values[i].forEach((_, j, v) => (v[j] = rng.normal() * 0.3));
      if (s.name.endsWith('.log_alpha')) model.values[i].forEach((_, j, v) => (v[j] = rng.normal() * 3));
    });
    model.markDirty();
    const plain = plainWith(model, mergeDiffs(model).weights);
    const [a, b, c] = [model, plain, base].map((m) => m.predict(batch()).logits);
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-5, `${v} vs ${b[i]}`));
    assert.ok(
      a.some((v, i) => Math.abs(v - c[i]) > 1e-3),
      'the differences change the predictions',
    );
    [base, model, plain].forEach((m) => m.dispose());
  });

  test("the gates' log_alpha step by their own AdamW (alpha_lr, constant, no decay); the rest by the run's", () => {
    const { base, model } = diffModel(0);
    const options = { kind: 'diff-pruning', lambda: 0, alpha_init: 5, alpha_lr: 0.1, target_modules: ['query'] };
    const definition = definitionOf('diff-pruning');
    const hooks = definition.hooks(definition.prepare({ options, specs: model.specs } as never));
    const run = adamwStep({ lr: 1e-5, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 }, 3, 1e-5);
    for (const suffix of ['log_alpha', 'tensor_log_alpha']) {
      const own = hooks.ownStep!(model.indexOf(`${QUERY}.weight.diff_pruning.${suffix}`), 3, run)!;
      assert.deepEqual(own, adamwStep({ lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 }, 3, 0.1));
    }
    for (const name of [`${QUERY}.weight.diff_pruning.delta`, 'classifier.weight'])
      assert.equal(hooks.ownStep!(model.indexOf(name), 3, run), undefined);
    [base, model].forEach((m) => m.dispose());
  });

  test('finite differences: the step by the differences and gates under fixed gate noise; the penalty enters once', () => {
    const { base, model } = diffModel(0);
    const rng = new Rng(8);
    model.specs.forEach((s, i) => {
      if (s.name.endsWith('.delta')) model.values[i].forEach((_, j, v) => (v[j] = rng.normal() * 0.3));
    });
    model.markDirty();
    // A tensor's gate: one log_alpha, its gradient the sum over the tensor (checked where its draw is inside the clamp).
    const tensorGate = `${QUERY}.weight.diff_pruning.tensor_log_alpha`;
    const seedInside = [21, 22, 23, 24, 25, 26, 27, 28].find((seed) => {
      const g = gradsOf(model);
      model.step(batch(), g, null, undefined, { seed });
      return g[model.indexOf(tensorGate)][0] !== 0;
    });
    assert.ok(seedInside !== undefined, 'a step whose tensor gate is inside the clamp');
    checkDirection(model, tensorGate, () => ({ seed: seedInside }));
    for (const name of [
      `${QUERY}.weight.diff_pruning.delta`,
      `${QUERY}.weight.diff_pruning.log_alpha`,
      `${OUTPUT}.weight.diff_pruning.log_alpha`,
      `${OUTPUT}.bias.diff_pruning.delta`,
      `${OUTPUT}.bias.diff_pruning.log_alpha`,
      'classifier.weight',
    ])
      checkDirection(model, name, () => ({ seed: 21 }));
    // The same model with lambda > 0: its log_alpha gradient is the task's plus lambda dL0/dlog_alpha, once.
    const { base: base2, model: penalised } = diffModel(0.5);
    penalised.values.forEach((v, i) => v.set(model.values[i]));
    penalised.markDirty();
    const [g0, g1] = [gradsOf(model), gradsOf(penalised)];
    model.step(batch(), g0, null, undefined, { seed: 21 });
    penalised.step(batch(), g1, null, undefined, { seed: 21 });
    const i = model.indexOf(`${QUERY}.weight.diff_pruning.log_alpha`);
    // lambda d sigmoid(a)/da = lambda p (1 - p): the reference's L0 term, its shift log(-LOWER / UPPER) being 0.
    const l0Gradient = (a: number) => 0.5 * sigmoid(a) * (1 - sigmoid(a));
    g1[i].forEach((v, j) => assert.ok(Math.abs(v - g0[i][j] - l0Gradient(model.values[i][j])) < 1e-6));
    const t = model.indexOf(`${QUERY}.weight.diff_pruning.tensor_log_alpha`);
    assert.ok(Math.abs(g1[t][0] - g0[t][0] - l0Gradient(model.values[t][0])) < 1e-6);
    [base, model, base2, penalised].forEach((m) => m.dispose());
  });
});

describe('mask tuning', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const maskModel = (initialSparsity = 0.3, roles = ['query', 'output', 'head-dense']) =>
    modified(
      modifiersFor({
        kind: 'mask-tuning',
        threshold: 0.01,
        initial_sparsity: initialSparsity,
        init_scale: 0.02,
        target_modules: roles,
      } as never),
    );

  test("the reference's initialisation: uniform from -init_scale, the initial sparsity as asked; scores above the threshold keep the pretrained model; saving applies the masks", () => {
    const { base, model } = maskModel(0.3);
    // Every score above the threshold: the pretrained model.
    model.specs.forEach((s, i) => s.name.endsWith('.scores') && model.values[i].fill(0.0100001));
    model.markDirty();
    assert.equal(model.step(batch(), gradsOf(model), null).loss, base.step(batch(), gradsOf(base), null).loss);
    base.dispose();
    model.dispose();
    const { base: b2, model: masked } = maskModel(0.3);
    const scores = masked.values[masked.indexOf(`${OUTPUT}.mask_tuning.scores`)];
    const below = scores.filter((s) => s <= 0.01).length / scores.length;
    assert.ok(Math.abs(below - 0.3) < 0.08, `initial sparsity ${below}`);
    // maskers.py: [-init_scale, (init_scale + threshold) / init_sparsity - init_scale] = [-0.02, 0.08].
    assert.ok(scores.every((s) => s >= -0.02 - 1e-7 && s <= 0.08 + 1e-7));
    assert.ok(Math.min(...scores) < -0.015 && Math.max(...scores) > 0.075);
    const trained = masked.specs.filter(trains).map((s) => s.name);
    assert.ok(!trained.includes(`${OUTPUT}.weight`) && trained.includes(`${OUTPUT}.mask_tuning.scores`));
    assert.ok(!trained.includes(`${OUTPUT}.bias`), 'biases are neither masked nor trained');
    assert.ok(trained.includes('classifier.weight'), 'an unmasked classifier trains as usual');
    const { weights, kept } = applyMasks(masked, 0.01);
    assert.ok(Math.abs(kept.fraction - 0.7) < 0.08, `kept ${kept.fraction}`);
    const plain = plainWith(masked, weights);
    const [a, b] = [masked.predict(batch()).logits, plain.predict(batch()).logits];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-6, `${v} vs ${b[i]}`));
    [b2, masked, plain].forEach((m) => m.dispose());
  });

  test('by default the classifier is masked as the reference (its initial weights, never trained); nothing else trains', () => {
    const options = { kind: 'mask-tuning', threshold: 0.01, initial_sparsity: 0.05, init_scale: 0.02 };
    const roles = (
      JSON.parse(fs.readFileSync(path.join(REPO, 'src/strategies/mask-tuning/schema.json'), 'utf8')) as never as {
        properties: { target_modules: { default: string[] } };
      }
    ).properties.target_modules.default;
    assert.ok(roles.includes('head-out'));
    const { base, model } = modified(modifiersFor({ ...options, target_modules: roles } as never));
    const trained = model.specs.filter(trains).map((s) => s.name);
    assert.ok(trained.length > 0 && trained.every((n) => n.endsWith('.mask_tuning.scores')), trained.join(', '));
    assert.ok(trained.includes('classifier.mask_tuning.scores'));
    [base, model].forEach((m) => m.dispose());
  });

  test("finite differences: the scores' straight-through gradient is the loss's derivative by the real-valued mask", () => {
    const { base, model } = maskModel(0.3);
    const { weights } = applyMasks(model, 0.01);
    const plain = plainWith(model, weights);
    for (const site of [QUERY, OUTPUT]) {
      const s = model.indexOf(`${site}.mask_tuning.scores`);
      const w = model.indexOf(`${site}.weight`);
      const grads = gradsOf(model);
      model.step(batch(), grads, null);
      const rng = new Rng(streamSeed(3, s));
      const dir = Float32Array.from({ length: grads[s].length }, () => rng.normal());
      // The mask made real-valued: moving it by t dir moves the masked weight by t (w * dir).
      const analytic = dot(grads[s], dir);
      const masked = Float32Array.from(plain.values[w]);
      const lossAt = (t: number) => {
        plain.values[w].set(masked.map((v, j) => v + t * model.values[w][j] * dir[j]));
        plain.markDirty();
        return plain.step(batch(), gradsOf(plain), null).loss;
      };
      const h = 1e-3;
      const numeric = (lossAt(h) - lossAt(-h)) / (2 * h);
      plain.values[w].set(masked);
      plain.markDirty();
      assert.ok(
        Math.abs(analytic - numeric) <= 2e-3 * Math.max(1, Math.abs(analytic)),
        `${site}: ${analytic} vs ${numeric}`,
      );
    }
    checkDirection(model, 'classifier.weight', () => ({}));
    [base, model, plain].forEach((m) => m.dispose());
  });
});

describe('diff-pruning and mask-tuning runs (2 threads)', () => {
  const project = tmpProject();
  const allow = ['--allow-path', path.dirname(GLUE)];

  before(async () => {
    await tinyModel(path.join(project, 'model'));
  });

  test("at the bundled recipe's settings (stage boundary scaled to a short run), the projection leaves the target share", async () => {
    // The bundled recipe's training block and strategy, on 8 examples: one step per epoch, so the projection
    // comes after step 3 of 6 and the fixed-mask stage trains the last 3.
    const bundled = parse(fs.readFileSync(path.join(REPO, 'recipes/delta/diff-pruning-rte.yaml'), 'utf8'));
    const [strategy] = bundled.sweep.grid.strategy as { kind: string; projection_at: number }[];
    assert.equal(strategy.projection_at, 0.5);
    const recipe = write(
      project,
      'stages.yaml',
      `version: 1
model: {path: ./model, max_seq_length: 32}
dataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}, subsample: {size: 8, seed: 0}}
strategy: ${JSON.stringify(strategy)}
training: ${JSON.stringify({ ...bundled.training, log_every: 1, checkpoint_every: 1 })}
evaluation: {batch_size: 128}
runtime: {threads: 2}
`,
    );
    const r = await cli(['run', recipe, '--json', '--quiet', ...allow]);
    assert.equal(r.code, 0, r.err);
    const [{ dir }] = JSON.parse(r.out) as { dir: string }[];
    const results = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
    assert.equal(results.steps, 6);
    assert.equal(results.diff_target_sparsity, 0.005);
    const kept = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'diff-pruning.json'), 'utf8'));
    const target = Math.floor(0.005 * kept.gated_parameters);
    assert.ok(kept.kept_fraction < 1, `kept ${kept.kept_fraction}`);
    // Exactly floor(0.005 x gated entries): no two merged differences tie at the threshold in this run.
    assert.equal(kept.kept_parameters, target, JSON.stringify(kept));
    assert.ok(kept.mean_log_alpha < 0, 'the pruned gates are fixed closed');
    // The logged learning rate is each stage's own: stage one's decays over its 3 steps, the fixed-mask stage's
    // starts again at fixmask_lr.
    const lrs = metricsOf(dir)
      .filter((e) => e.kind === 'step')
      .map((e) => e.lr as number);
    const expected = [1, 2 / 3, 1 / 3].map((f) => f * 1e-5).concat([1, 2 / 3, 1 / 3].map((f) => f * 5e-5));
    lrs.forEach((lr, i) => assert.ok(Math.abs(lr - expected[i]) < 1e-12, `step ${i + 1}: lr ${lr}`));

    // Killed after a checkpoint, before or after the projection, the run resumes to the same model and log.
    const runDir = await killAndResume(recipe, 2, allow);
    assert.deepEqual(metricsOf(runDir), metricsOf(dir));
    assert.deepEqual(modelBytes(runDir), modelBytes(dir));
  });

  test("validate reports another kind's option against the kind written, naming its kinds", async () => {
    const recipe = write(
      project,
      'misplaced.yaml',
      `version: 1
model: {path: ./model, max_seq_length: 32}
dataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}}
strategy: {kind: mask-tuning, alpha_init: 2, threshold: 0.01}
`,
    );
    const r = await cli(['validate', recipe, ...allow]);
    assert.equal(r.code, 1);
    assert.match(r.err + r.out, /CT0303.*alpha_init applies only to diff-pruning/);
    assert.doesNotMatch(r.err + r.out, /threshold/);
  });

  test('in a sweep, reruns are bit-identical; each trains only its own parameters and the classifier', async () => {
    const recipe = write(
      project,
      'sweep.yaml',
      `version: 1
model: {path: ./model, max_seq_length: 32}
dataset:
  task: glue/rte
  dir: ${path.join(GLUE, 'RTE')}
  subsample: {size: 24, seed: 0}
strategy: {kind: vanilla}
training: {epochs: 1, batch_size: 8, log_every: 1, checkpoint_every: 1, optimizer: {lr: 0.01}}
evaluation: {batch_size: 128}
runtime: {threads: 2}
sweep:
  grid:
    strategy: [{kind: diff-pruning, lambda: 0.001, alpha_init: 0.1}, {kind: mask-tuning}]
`,
    );
    const once = await cli(['sweep', recipe, '--json', '--quiet', ...allow]);
    assert.equal(once.code, 0, once.err);
    const again = await cli(['sweep', recipe, '--json', '--quiet', ...allow]);
    assert.equal(again.code, 0, again.err);
    const [a, b] = [JSON.parse(once.out), JSON.parse(again.out)] as { dir: string; trainable_share: number }[][];
    for (let t = 0; t < 2; t++) {
      assert.deepEqual(metricsOf(b[t].dir), metricsOf(a[t].dir));
      assert.deepEqual(modelBytes(b[t].dir), modelBytes(a[t].dir));
    }
    // Mask tuning trains scores for some weights; diff pruning, as its reference, a difference and a log_alpha for
    // every value but the classifier's beside the frozen one (and a log_alpha per tensor): just over 2/3 of all.
    assert.ok(a[1].trainable_share < 0.5, `mask tuning's trainable share ${a[1].trainable_share}`);
    assert.ok(
      a[0].trainable_share > 2 / 3 && a[0].trainable_share < 2 / 3 + 1e-3,
      `diff pruning's trainable share ${a[0].trainable_share}`,
    );
    // Diff pruning's gates, all open at log_alpha 0.1, closed in 3 steps: log_alpha fell by more than the run's lr
    // could move it (its own AdamW at alpha_lr 0.1).
    const gates = JSON.parse(fs.readFileSync(path.join(a[0].dir, 'model', 'diff-pruning.json'), 'utf8'));
    assert.ok(gates.mean_log_alpha < 0.1 - 0.1, `mean log_alpha ${gates.mean_log_alpha}`);
    assert.ok(gates.kept_fraction < 1, `kept ${gates.kept_fraction}`);
    const results = JSON.parse(fs.readFileSync(path.join(a[1].dir, 'results.json'), 'utf8'));
    assert.equal(results.mask_threshold, 0.01);
  });
});
