import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { adamwStep, jsPasses, pullTowards, type AdamWSettings } from '../src/engine/optimizer.js';
import { OptimizerKernels, SharedArena } from '../src/engine/optimizer-wasm.js';
import { updateSegment } from '../src/engine/parallel/shard.js';
import { Rng } from '../src/engine/rng.js';
import { parseSafetensors } from '../src/engine/safetensors.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { annealed, recallPenalty } from '../src/strategies/recadam/index.js';
import { strategyFor } from '../src/strategies/registry.js';
import { towardsPretrainedPenalty } from '../src/strategies/weight-decay-to-pretrained/index.js';
import { cli, GLUE, killAndResume, microModel, tinyModelRecipe } from './helpers.js';
import { modelBytes } from './strategy-checks.js';

const SETTINGS: AdamWSettings = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-6, weightDecay: 0.01 };
const allow = ['--allow-path', path.dirname(GLUE)];
const data = (size: number) => `dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: ${size}, seed: 0}
`;

/**
 * Trains a micro model's weights `steps` updates on seeded random gradients through updateSegment (the engine's
 * update of one thread), with the pretrained anchor kept; returns the weights.
 */
function trainMicro(strategy: Recipe['strategy'], steps = 4): Float32Array[] {
  const model = microModel({ seed: 3 });
  const specs = model.specs;
  const recipe = { strategy, training: { seed: 1 } } as unknown as Recipe;
  const hooks = strategyFor(recipe, specs).spec;
  const values = model.values.map((v) => Float32Array.from(v));
  const state = {
    values,
    grads: [values.map((v) => new Float32Array(v.length))],
    m: values.map((v) => new Float32Array(v.length)),
    v: values.map((v) => new Float32Array(v.length)),
    anchor: model.values.map((v) => Float32Array.from(v)),
  };
  const rng = new Rng(7);
  for (let step = 1; step <= steps; step++) {
    const adam = adamwStep(SETTINGS, step, SETTINGS.lr * (1 - step / 10));
    specs.forEach((spec, index) => {
      const g = state.grads[0][index];
      for (let j = 0; j < g.length; j++) g[j] = rng.normal() * 0.5;
      updateSegment(state, { index, lo: 0, hi: g.length }, hooks, step, 1, adam, spec.decay);
    });
  }
  return values;
}

const sameBits = (a: Float32Array[], b: Float32Array[]) =>
  a.every((x, i) =>
    Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(
      Buffer.from(b[i].buffer, b[i].byteOffset, b[i].byteLength),
    ),
  );

test('weight decay towards pretrained with lambda 0 is vanilla, and RecAdam with its penalty off (constant lambda 1) is AdamW, bit for bit', () => {
  const vanilla = trainMicro({ kind: 'vanilla' });
  assert.ok(sameBits(trainMicro({ kind: 'weight-decay-to-pretrained', lambda: 0 } as never), vanilla));
  assert.ok(
    sameBits(trainMicro({ kind: 'recadam', anneal: 'constant', k: 0.5, t0: 250, gamma: 5000 } as never), vanilla),
  );
  // And with the penalties on, the weights differ (the test above compares something).
  assert.ok(!sameBits(trainMicro({ kind: 'weight-decay-to-pretrained', lambda: 0.5 } as never), vanilla));
  assert.ok(!sameBits(trainMicro({ kind: 'recadam', anneal: 'sigmoid', k: 1, t0: 2, gamma: 50 } as never), vanilla));
});

test('RecAdam follows Chen et al.: the Adam step times lambda(t), then lr (1 - lambda(t)) gamma (w - w*) off the stepped weights, then the decay; the classifier is plain AdamW', () => {
  const options = { kind: 'recadam', anneal: 'sigmoid', k: 1, t0: 2, gamma: 50 } as const;
  const got = trainMicro(options as never, 3);
  // The same updates written out from the paper's formulation, element by element, in float32 as torch would store them.
  const model = microModel({ seed: 3 });
  const w = model.values.map((v) => Float32Array.from(v));
  const m = w.map((x) => new Float32Array(x.length));
  const v = w.map((x) => new Float32Array(x.length));
  const rng = new Rng(7);
  for (let t = 1; t <= 3; t++) {
    const lr = SETTINGS.lr * (1 - t / 10);
    const stepSize = (lr * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t);
    const lambda = 1 / (1 + Math.exp(-1 * (t - 2)));
    assert.equal(annealed(options, t), lambda);
    model.specs.forEach((spec, i) => {
      const penalised = !spec.name.startsWith('classifier.');
      for (let j = 0; j < w[i].length; j++) {
        const g = rng.normal() * 0.5;
        m[i][j] = 0.9 * m[i][j] + 0.1 * g;
        v[i][j] = 0.999 * v[i][j] + 0.001 * g * g;
        let p = Math.fround(
          w[i][j] - ((penalised ? stepSize * lambda : stepSize) * m[i][j]) / (Math.sqrt(v[i][j]) + 1e-6),
        );
        if (penalised) p = Math.fround(p + -lr * (1 - lambda) * 50 * (p - model.values[i][j]));
        w[i][j] = spec.decay ? p - lr * SETTINGS.weightDecay * p : p;
      }
    });
  }
  got.forEach((x, i) => {
    for (let j = 0; j < x.length; j++)
      assert.ok(Math.abs(x[j] - w[i][j]) <= 1e-7 * Math.max(1, Math.abs(w[i][j])), `${model.specs[i].name}[${j}]`);
  });
});

test("finite differences: the gradients both penalties apply are their losses' gradients", () => {
  const rng = new Rng(11);
  const n = 16;
  const w = Float32Array.from({ length: n }, () => rng.normal());
  const w0 = Float32Array.from({ length: n }, () => rng.normal());
  const h = 1e-3;
  const central = (f: (x: Float32Array) => number, j: number) => {
    const up = Float64Array.from(w) as unknown as Float32Array;
    const down = Float64Array.from(w) as unknown as Float32Array;
    up[j] += h;
    down[j] -= h;
    return (f(up) - f(down)) / (2 * h);
  };
  // Weight decay towards pretrained: the transform adds lambda (w - w0) to the gradient.
  const lambda = 0.3;
  const added = new Float32Array(n);
  pullTowards(added, w, w0, 0, n, lambda);
  for (let j = 0; j < n; j++)
    assert.ok(Math.abs(added[j] - central((x) => towardsPretrainedPenalty(x, w0, lambda), j)) < 1e-4, `wd ${j}`);
  // RecAdam: the step rule's pull, lr times the penalty's gradient, through the engine's update of the weights.
  const options = { kind: 'recadam', anneal: 'sigmoid', k: 0.5, t0: 3, gamma: 20 } as const;
  const specs = [
    { name: 'bert.x.weight', shape: [n], transposed: false, decay: false, group: 'encoder', init: 'zeros' },
  ] as const;
  const hooks = strategyFor({ strategy: options, training: { seed: 1 } } as unknown as Recipe, specs as never).spec;
  const adam = adamwStep(SETTINGS, 2, 0.01);
  const change = hooks.stepRule!(0, 2, adam)!;
  const lambdaT = annealed(options, 2);
  assert.equal(change.scale, lambdaT);
  const moved = Float32Array.from(w);
  pullTowards(moved, moved, w0, 0, n, change.pull);
  for (let j = 0; j < n; j++) {
    const grad = central((x) => recallPenalty(x, w0, options.gamma, lambdaT), j);
    assert.ok(Math.abs((w[j] - moved[j]) / 0.01 - grad) < 1e-3 * Math.max(1, Math.abs(grad)), `recadam ${j}`);
  }
});

/** A saved model's tensors by name. */
const tensorsOf = (file: string) => parseSafetensors(fs.readFileSync(file), file);
const differs = (a: { data: Float32Array }, b: { data: Float32Array }) => a.data.some((x, j) => x !== b.data[j]);

test('BitFit changes only biases and the head; Top-K leaves the embeddings and the lower layers bit-identical', async () => {
  for (const [strategy, frozen] of [
    ['{kind: bitfit}', (name: string) => !name.endsWith('.bias')],
    ['{kind: top-k-layers, layers: 1}', (name: string) => name.includes('embeddings') || name.includes('layer.0.')],
  ] as const) {
    const recipe = await tinyModelRecipe(`${data(16)}strategy: ${strategy}
training: {epochs: 1, batch_size: 8, optimizer: {lr: 0.01}}
evaluation: {batch_size: 64}
`);
    const r = await cli(['run', recipe, '--json', ...allow]);
    assert.equal(r.code, 0, r.err);
    const before = tensorsOf(path.join(path.dirname(recipe), 'model', 'model.safetensors'));
    const after = tensorsOf(path.join(JSON.parse(r.out)[0].dir, 'model', 'model.safetensors'));
    let changed = 0;
    for (const [name, t] of after) {
      if (name.startsWith('classifier.') || name.includes('pooler.')) continue;
      if (frozen(name)) assert.ok(!differs(t, before.get(name)!), `${strategy}: ${name} is frozen`);
      else if (differs(t, before.get(name)!)) changed++;
    }
    assert.ok(changed > 0, `${strategy}: the trainable tensors moved`);
  }
});

test('BitFit, Top-K and weight decay towards pretrained rerun on 2 threads bit for bit', async () => {
  const recipe = await tinyModelRecipe(`${data(16)}strategy: {kind: bitfit}
training: {epochs: 1, batch_size: 8}
evaluation: {batch_size: 64}
runtime: {threads: 2}
sweep:
  grid:
    strategy: [{kind: bitfit}, {kind: top-k-layers, layers: 1}, {kind: weight-decay-to-pretrained, lambda: 0.1}]
`);
  const sweep = async (name: string) => {
    const out = path.join(path.dirname(recipe), name);
    const r = await cli(['sweep', recipe, '--set', `runtime.output_dir=${out}`, '--quiet', '--json', ...allow]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as { strategy: string; dir: string; metrics: unknown; final_loss: number }[];
  };
  const [first, second] = [await sweep('first'), await sweep('second')];
  assert.deepEqual(
    first.map((t) => t.strategy),
    ['bitfit', 'top-k-layers', 'weight-decay-to-pretrained'],
  );
  first.forEach((t, k) => {
    assert.deepEqual([t.metrics, t.final_loss], [second[k].metrics, second[k].final_loss], t.strategy);
    assert.deepEqual(modelBytes(t.dir), modelBytes(second[k].dir), `${t.strategy}: the same model, byte for byte`);
  });
});

test("the plan shows each strategy's trainable parameters and the pretrained anchor it adds, over a sweep of kinds; a misplaced option names its kind", async () => {
  const recipe = await tinyModelRecipe(`${data(16)}strategy: {kind: vanilla}
training: {epochs: 1, batch_size: 8}
sweep:
  grid: {strategy.kind: [vanilla, bitfit, top-k-layers, weight-decay-to-pretrained, recadam]}
`);
  const r = await cli(['plan', recipe, ...allow]);
  assert.equal(r.code, 0, r.err);
  const trainable = [...r.out.matchAll(/trainable: ([\d,]+) parameters \(([\d.]+)%\)/g)].map((m) => Number(m[2]));
  assert.equal(trainable.length, 5);
  assert.equal(trainable[0], 100);
  assert.ok(trainable[1] < 5 && trainable[1] > 0, `bitfit trains ${trainable[1]}%`);
  assert.equal(trainable[3], 100);
  assert.equal([...r.out.matchAll(/pretrained anchor/g)].length, 2);
  const bad = write2(recipe, `${data(16)}strategy: {kind: bitfit, gamma: 10}\n`);
  const v = await cli(['validate', bad, ...allow]);
  assert.equal(v.code, 1);
  assert.match(v.out + v.err, /CT0303[\s\S]*gamma[\s\S]*recadam/);
});

const write2 = (beside: string, body: string) => {
  const file = path.join(path.dirname(beside), 'bad.yaml');
  fs.writeFileSync(file, `version: 1\nmodel: {path: ./model, max_seq_length: 32}\n${body}`);
  return file;
};

test('RecAdam on 2 threads killed with SIGKILL resumes to exactly the run that was not interrupted', async () => {
  const recipe = await tinyModelRecipe(`${data(32)}strategy: {kind: recadam, k: 1, t0: 4, gamma: 500}
training: {epochs: 2, batch_size: 8, log_every: 1, checkpoint_every: 2}
evaluation: {batch_size: 64}
runtime: {threads: 2}
`);
  const whole = await cli(['run', recipe, '--json', ...allow]);
  assert.equal(whole.code, 0, whole.err);
  const reference = JSON.parse(whole.out)[0].dir;
  const killAt = 2 * (1 + new Rng(Date.now()).int(3));
  const runDir = await killAndResume(recipe, killAt, allow);
  const results = (dir: string) => {
    const x = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
    return { metrics: x.metrics, epochs: x.epochs, final_loss: x.final_loss, steps: x.steps };
  };
  assert.deepEqual(results(runDir), results(reference));
  assert.deepEqual(modelBytes(runDir), modelBytes(reference));
});

test('the wasm passes that read the anchor (pull, decay) equal the JavaScript passes bit for bit', () => {
  for (const [n, lo, seed] of [
    [1, 0, 1],
    [777, 5, 2],
    [4096, 64, 3],
  ]) {
    const rng = new Rng(seed);
    const arena = SharedArena.create([n + lo, n + lo, n + lo])!;
    const [x, p, a] = [0, 1, 2].map(() => {
      const y = arena.floats(n + lo);
      y.forEach((_, i) => (y[i] = rng.normal()));
      return y;
    });
    const kernels = new OptimizerKernels(arena.memory, new Float32Array(0));
    const [xj, pj, aj] = [x, p, a].map((y) => Float32Array.from(y));
    kernels.pull(x, p, a, lo, lo + n, 0.37);
    jsPasses.pull(xj, pj, aj, lo, lo + n, 0.37);
    kernels.pull(p, p, a, lo, lo + n, -0.013);
    jsPasses.pull(pj, pj, aj, lo, lo + n, -0.013);
    kernels.decay(p, lo, lo + n, 2e-7);
    jsPasses.decay(pj, lo, lo + n, 2e-7);
    assert.ok(sameBits([x, p], [xj, pj]), `n=${n} lo=${lo}`);
  }
});
