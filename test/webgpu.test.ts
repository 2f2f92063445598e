import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { activeDeviceInfo, selectBackend } from '../src/engine/backend.js';
import { batchOf } from '../src/engine/batch.js';
import { initStrategyParams, loadPretrained } from '../src/engine/checkpoint.js';
import { EncoderClassifier, type Batch } from '../src/engine/model.js';
import { sizeOf, type ParamSpec } from '../src/engine/modules/param.js';
import type { Encoding } from '../src/engine/tokenizer.js';
import { clipCoefficient } from '../src/engine/optimizer.js';
import { popcount } from '../src/engine/bitset.js';
import type { UpdateObserver } from '../src/engine/parallel/hooks.js';
import { Rng } from '../src/engine/rng.js';
import { updateGroups } from '../src/engine/webgpu/optimizer.js';
import { loadRecipe } from '../src/recipe/index.js';
import { startPool, type RunPool } from '../src/run/parallel.js';
import { childTuningD } from '../src/strategies/child-tuning-d/index.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import { accumulateFisher, selectChild } from '../src/strategies/fisher.js';
import { anchorFor, modifiersFor, STRATEGIES, strategyFor } from '../src/strategies/registry.js';
import type { Strategy } from '../src/strategies/strategy.js';
import { vanilla } from '../src/strategies/vanilla/index.js';
import { gpuSkip, pollByTimer, swiftshaderIcd, useSwiftshader } from './gpu.js';
import {
  bertConfig,
  cli,
  FIXTURES,
  GLUE,
  microBatch,
  microModel,
  randomModel,
  REPO,
  runUntilKilled,
  tmpProject,
  write,
} from './helpers.js';
import { metricsOf, modelBytes, resultsOf } from './strategy-checks.js';

/**
 * The webgpu backend on SwiftShader (a software Vulkan device, so CI runs it): the same model and strategies as
 * the CPU path, step by step. SwiftShader runs about 0.5 GFLOP/s, so the shapes are small.
 */
const skip = gpuSkip();
const env = skip ? {} : useSwiftshader(swiftshaderIcd()!);
const adam = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 };
const TINY = path.join(FIXTURES, 'bert-tiny-random');

/** `n` random sequences of `seq` tokens (ids below 2000), labels alternating. */
function examples(n: number, seq: number, seed: number): { encodings: Encoding[]; labels: number[] } {
  const rng = new Rng(seed);
  const encodings = Array.from({ length: n }, () => ({
    tokens: [],
    inputIds: Array.from({ length: seq }, () => 1 + rng.int(2000)),
    tokenTypeIds: new Array<number>(seq).fill(0),
    attentionMask: new Array<number>(seq).fill(1),
  }));
  return { encodings, labels: encodings.map((_, i) => i % 2) };
}

/** `count` batches of `rows` such sequences. */
function batches(count: number, rows: number, seq: number, seed: number): Batch[] {
  const { encodings, labels } = examples(count * rows, seq, seed);
  return Array.from({ length: count }, (_, k) =>
    batchOf(encodings.slice(k * rows, (k + 1) * rows), seq, labels.slice(k * rows, (k + 1) * rows), 0),
  );
}

/** Every update's bitsets, copied (what F's masks record reads). */
function bitsRecorder(strategy: Strategy) {
  const steps: Uint8Array[][] = [];
  const observer: UpdateObserver = {
    readsBits: true,
    before: (step, bits) => strategy.before(step, bits),
    after: (step, bits, sizes, kept) => {
      strategy.after(step, bits, sizes, kept);
      steps.push(bits.map((b) => Uint8Array.from(b)));
    },
  };
  return { steps, observer };
}

/** Steps on one backend: losses, gradient norms, and the weights at the end. */
async function train(
  backend: 'wasm' | 'webgpu',
  model: EncoderClassifier,
  strategy: Strategy,
  data: Batch[],
  o: { dropout?: number; observer?: UpdateObserver } = {},
) {
  await selectBackend(backend);
  const pool = await startPool(model, { threads: 1, backend, adam });
  await pool.setStrategy(strategy);
  const losses: number[] = [];
  const norms: number[] = [];
  for (const [k, b] of data.entries()) {
    const r = await pool.gradients(b, o.dropout ?? null, 100 + k);
    losses.push(r.loss);
    norms.push(r.norm);
    await pool.update(adam.lr, clipCoefficient(r.norm, 1), o.observer ?? strategy);
  }
  await pool.syncToHost();
  const weights = model.values.map((v) => Float32Array.from(v));
  await pool.close();
  return { losses, norms, weights };
}

const tiny = () => loadPretrained(TINY, { numLabels: 2, seed: 3 }).model;

/** Child-Tuning-F (p 0.3 over every tensor) on a fresh model, every step's masks recorded. */
async function fRun(
  backend: 'wasm' | 'webgpu',
  model: () => EncoderClassifier,
  specs: ParamSpec[],
  seed: number,
  data: Batch[],
) {
  const s = childTuningF(0.3, 'all', specs, seed);
  const rec = bitsRecorder(s);
  return { ...(await train(backend, model(), s, data, { observer: rec.observer })), masks: rec.steps, s };
}

/** Largest absolute difference over every weight. */
const worst = (a: Float32Array[], b: Float32Array[]) =>
  a.reduce((m, x, i) => x.reduce((mm, v, j) => Math.max(mm, Math.abs(v - b[i][j])), m), 0);

const relClose = (gpu: number[], cpu: number[], tol: number, what: string) =>
  gpu.forEach((g, k) =>
    assert.ok(Math.abs(g - cpu[k]) <= tol * Math.abs(cpu[k]), `${what} step ${k + 1}: gpu ${g} cpu ${cpu[k]}`),
  );

describe('webgpu backend on SwiftShader', { skip }, () => {
  let restore: () => void;
  before(() => (restore = pollByTimer()));
  after(() => restore());

  test('the adapter is found, named and never taken by auto (a software adapter)', async () => {
    const gpu = await selectBackend('webgpu');
    assert.equal(gpu.name, 'webgpu');
    assert.equal(gpu.device?.software, true);
    assert.match(gpu.device!.architecture, /swiftshader/i);
    assert.deepEqual(activeDeviceInfo(), gpu.device);
    const auto = await selectBackend('auto');
    assert.notEqual(auto.name, 'webgpu');
    assert.match(auto.skipped.find((s) => s.name === 'webgpu')!.why, /a software adapter/);
  });

  test('vanilla, F and D agree with the CPU path step by step on BERT-tiny (dropout off)', async () => {
    const data = batches(2, 2, 8, 11);
    // Vanilla: the losses within 1e-4 relative at every step, and the weights within the tolerance the README states.
    const v = [await train('wasm', tiny(), vanilla(), data), await train('webgpu', tiny(), vanilla(), data)];
    relClose(v[1].losses, v[0].losses, 1e-4, 'vanilla loss');
    relClose(v[1].norms, v[0].norms, 1e-4, 'vanilla gradient norm');
    assert.ok(worst(v[1].weights, v[0].weights) <= 1e-4, `vanilla weights: ${worst(v[1].weights, v[0].weights)}`);

    // F: the same random streams, so the masks are bit-identical on the device.
    const specs = tiny().specs;
    const [fc, fg] = [await fRun('wasm', tiny, specs, 17, data), await fRun('webgpu', tiny, specs, 17, data)];
    relClose(fg.losses, fc.losses, 1e-4, 'F loss');
    fg.masks.forEach((step, k) =>
      step.forEach((bits, i) => assert.deepEqual(bits, fc.masks[k][i], `F mask of ${specs[i].name} at step ${k + 1}`)),
    );
    assert.deepEqual(fg.s.keptCounts(), fc.s.keptCounts());
    // Replayed on the device: the CPU's recorded masks, uploaded before each update, train as they did there.
    const replayed = childTuningF(0.3, 'all', specs, 17, true);
    const replay = await train('webgpu', tiny(), replayed, data, {
      observer: {
        before: (step, bits) => fc.masks[step - 1].forEach((m, i) => bits[i].set(m)),
        after: (step, bits, sizes, kept) => replayed.after(step, bits, sizes, kept),
      },
    });
    relClose(replay.losses, fc.losses, 1e-4, 'F replayed loss');
    // Counted from the uploaded bits on the device: what the CPU's masks keep over those two steps.
    for (const [i, kept, total] of replayed.keptCounts()) {
      const n = total / 2;
      assert.equal(kept, popcount(fc.masks[0][i], n) + popcount(fc.masks[1][i], n), specs[i].name);
    }

    // D: the Fisher pass on the device selects the same child network but for elements within rounding of the
    // threshold; trained from the same network, the losses agree.
    const fisherOf = async (backend: 'wasm' | 'webgpu') => {
      await selectBackend(backend);
      const model = tiny();
      const pool = await startPool(model, { threads: 1, backend, adam });
      const settings = { estimator: 'batch', batch_size: 2, clip: 1, scope: 'encoder', seed: 5 } as const;
      const acc = await accumulateFisher(pool, model.specs, examples(4, 8, 23), settings, false);
      await pool.close();
      return selectChild(model, acc.fisher, 0.3, 'encoder');
    };
    const [dc, dg] = [await fisherOf('wasm'), await fisherOf('webgpu')];
    let both = 0;
    let either = 0;
    dc.masks.forEach((m, i) => {
      if (!m) return;
      for (let j = 0; j < m.length; j++) {
        both += popcount8(m[j] & dg.masks[i]![j]);
        either += popcount8(m[j] | dg.masks[i]![j]);
      }
    });
    const jaccard = both / either;
    assert.ok(jaccard >= 0.999, `D's child network on the GPU: Jaccard ${jaccard} (${either - both} elements differ)`);
    const d = [await train('wasm', tiny(), childTuningD(dc.masks, false), data)];
    d.push(await train('webgpu', tiny(), childTuningD(dc.masks, false), data));
    relClose(d[1].losses, d[0].losses, 1e-4, 'D loss');
  });

  test("BERT-base's widths: the word embeddings' update, past one dispatch dimension, is the CPU path's", async () => {
    // 30522 x 768 word embeddings: 91,568 workgroups of 256, more than one dimension holds (65,535), so their
    // update folds into two. One layer keeps SwiftShader's work small; the tokens' rows lie past the fold
    // (row 21,846 on), where a wrong fold would leave Adam's lr-sized steps or the kept counts out.
    const config = bertConfig(1, 768, 12);
    // Drawn once (1.5 s); each run trains a copy.
    const initial = randomModel(config, 4);
    const model = () => {
      const m = new EncoderClassifier(config, 2);
      initial.values.forEach((v, i) => (m.values[i] = Float32Array.from(v)));
      return m;
    };
    const data = batches(2, 1, 8, 13).map((b) => ({ ...b, inputIds: b.inputIds.map((x) => 28000 + x) }));
    const specs = initial.specs;
    const word = specs.findIndex((s) => s.name.endsWith('word_embeddings.weight'));
    assert.ok(updateGroups(sizeOf(specs[word]), 65535)[1] > 1, 'the word embeddings fold into two dimensions');
    const [cpu, gpu] = [await fRun('wasm', model, specs, 19, data), await fRun('webgpu', model, specs, 19, data)];
    relClose(gpu.losses, cpu.losses, 1e-4, 'loss');
    gpu.masks.forEach((step, k) => assert.deepEqual(step[word], cpu.masks[k][word], `word mask at step ${k + 1}`));
    assert.deepEqual(gpu.s.keptCounts(), cpu.s.keptCounts());
    assert.ok(worst(gpu.weights, cpu.weights) <= 1e-4, `weights: ${worst(gpu.weights, cpu.weights)}`);
    // Not vacuous: a row past the fold moved by Adam's steps on the device.
    const row = data[0].inputIds[0];
    const before = initial.values[word];
    let moved = 0;
    for (let j = row * config.hiddenSize; j < (row + 1) * config.hiddenSize; j++)
      moved = Math.max(moved, Math.abs(gpu.weights[word][j] - before[j]));
    assert.ok(moved > 5e-4, `row ${row} moved by ${moved}`);
  });

  test("gradient accumulation on the device: a step over two batches of 2 is the CPU path's", async () => {
    // The CPU path's accumulation equals one larger batch (parallel.test.ts); the shapes are the test above's.
    const pair = batches(2, 2, 8, 31);
    const step = async (backend: 'wasm' | 'webgpu') => {
      await selectBackend(backend);
      const model = tiny();
      const pool = await startPool(model, { threads: 1, backend, adam });
      await pool.setStrategy(vanilla());
      const r = await pool.accumulate(pair.map((batch) => ({ batch, dropoutSeed: null, stepSeed: null })));
      await pool.update(adam.lr, clipCoefficient(r.norm, 1));
      await pool.syncToHost();
      const weights = model.values.map((v) => Float32Array.from(v));
      await pool.close();
      return { ...r, weights };
    };
    const [cpu, gpu] = [await step('wasm'), await step('webgpu')];
    relClose([gpu.loss, gpu.norm], [cpu.loss, cpu.norm], 1e-4, 'accumulated loss and norm');
    assert.ok(worst(gpu.weights, cpu.weights) <= 1e-4, `accumulated weights: ${worst(gpu.weights, cpu.weights)}`);
  });

  test('a product with a small output and a long sum runs without atomics; an atomic kernel is refused', async () => {
    // A LoRA B's gradient at hidden 512 over 16 x 128 tokens: r x 2048 by 2048 x 512 (here 8 x 2048 by 2048 x 64,
    // the same program choice), for which tfjs's own pick is its split-K program, which adds with atomics.
    await selectBackend('webgpu');
    const rng = new Rng(41);
    const a = Float32Array.from({ length: 2048 * 8 }, () => rng.normal());
    const b = Float32Array.from({ length: 2048 * 64 }, () => rng.normal());
    const [h, dy] = [tf.tensor2d(a, [2048, 8]), tf.tensor2d(b, [2048, 64])];
    const product = async () => {
      const t = tf.matMul(h, dy, true, false);
      try {
        return await t.data();
      } finally {
        t.dispose();
      }
    };
    const [first, again] = [await product(), await product()];
    assert.deepEqual(again, first);
    let worstRel = 0;
    for (let i = 0; i < 8; i++)
      for (let j = 0; j < 64; j++) {
        let sum = 0;
        let scale = 0;
        for (let k = 0; k < 2048; k++) {
          sum += a[k * 8 + i] * b[k * 64 + j];
          scale += Math.abs(a[k * 8 + i] * b[k * 64 + j]);
        }
        worstRel = Math.max(worstRel, Math.abs(first[i * 64 + j] - sum) / scale);
      }
    assert.ok(worstRel < 1e-6, `product against float64: ${worstRel}`);
    // With tfjs left to choose, it takes the split-K program, which is refused before it runs.
    const flag = tf.env().get('WEBGPU_MATMUL_PROGRAM_TYPE');
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
    try {
      await assert.rejects(product, /kernel MatMulSplitKProgram adds with atomics/);
    } finally {
      tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', flag);
      tf.dispose([h, dy]);
    }
  });

  test('reruns on the device with dropout on are bit-identical', async () => {
    const data = batches(2, 2, 6, 5).map((b) => ({ ...b, inputIds: b.inputIds.map((x) => x % 40) }));
    const run = async () => {
      const model = microModel();
      return train('webgpu', model, childTuningF(0.5, 'all', model.specs, 9), data, { dropout: 77 });
    };
    const [a, b] = [await run(), await run()];
    assert.deepEqual(a.losses, b.losses);
    a.weights.forEach((w, i) => assert.deepEqual(w, b.weights[i]));
  });

  test('every registered strategy trains on the device as on the CPU', async () => {
    const dir = tmpProject();
    const batch = microBatch();
    for (const def of STRATEGIES) {
      // The micro model has 16 positions: a prompt of the default 100 tokens cannot stand before its sequences.
      const p = def.kind.startsWith('child-tuning')
        ? ', reserve_p: 0.3'
        : def.kind === 'prompt-tuning'
          ? ', length: 3'
          : '';
      const file = write(
        dir,
        `${def.kind}.yaml`,
        `version: 1\nmodel: {path: ${TINY}}\ndataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}}\nstrategy: {kind: ${def.kind}${p}}\n`,
      );
      const recipe = loadRecipe(file).recipe!;
      const side = async (backend: 'wasm' | 'webgpu') => {
        await selectBackend(backend);
        const base = microModel();
        const model = new EncoderClassifier(base.config, 3, undefined, modifiersFor(recipe.strategy));
        base.values.forEach((v, i) => (model.values[i] = v));
        initStrategyParams(model, 4);
        const masks =
          def.kind === 'child-tuning-d'
            ? model.specs.map((s, i) =>
                s.group === 'encoder'
                  ? Uint8Array.from({ length: Math.ceil(model.values[i].length / 8) }, (_, j) => (j * 37) & 255)
                  : undefined,
              )
            : undefined;
        const pool: RunPool = await startPool(model, { threads: 1, backend, adam, anchor: anchorFor(recipe.strategy) });
        const s = strategyFor(recipe, model.specs, masks);
        await pool.setStrategy(s);
        // A kind that changes the update (a transform, a step rule, its own step, which tensors train) is checked after one; the
        // others change the model's passes, which the first step's loss and gradient norm cover (SwiftShader is slow).
        const h = s.spec;
        // F's and D's updates are checked step by step on BERT-tiny above.
        const above = def.kind === 'child-tuning-f' || def.kind === 'child-tuning-d';
        const steps = !above && (h.transform || h.stepRule || h.ownStep || h.trains || h.decayMask) ? 2 : 1;
        const out: number[] = [];
        try {
          for (let k = 0; k < steps; k++) {
            const r = await pool.gradients(batch, null, 100 + k);
            out.push(r.loss, r.norm);
            if (k + 1 < steps) await pool.update(1e-2, 1, s);
          }
        } finally {
          await pool.close();
        }
        return out;
      };
      relClose(await side('webgpu'), await side('wasm'), 1e-4, def.kind);
    }
  });

  test('run, plan and the refusals: the device is named everywhere, a missing one is one clear error', async () => {
    const { dir, recipe } = await deviceProject(
      `strategy: {kind: child-tuning-f, reserve_p: 0.3, f_masks: {record: true}}
training: {batch_size: 8, epochs: 1, seed: 3, checkpoint_every: 1}`,
    );
    const plan = await cli(['plan', recipe]);
    assert.equal(plan.code, 0, plan.err);
    assert.match(plan.out, /^device: google swiftshader .*a software adapter$/m);
    assert.match(plan.out, /gpu memory: [\d.]+ [KMG]iB \(weights .*largest buffer/);

    const run = await cli(['run', recipe]);
    assert.equal(run.code, 0, run.err);
    const runDir = run.out.trim().split('\n').at(-1)!.split(':')[0];
    const results = JSON.parse(fs.readFileSync(path.join(runDir, 'results.json'), 'utf8'));
    assert.equal(results.backend, 'webgpu');
    assert.equal(results.threads, 1);
    assert.equal(results.device.architecture, 'swiftshader');
    assert.equal(results.device.software, true);
    assert.match(run.err, /^device: google swiftshader/m);
    assert.ok(fs.existsSync(path.join(runDir, 'checkpoints')), 'checkpoints written from the device');
    assert.ok(fs.statSync(path.join(runDir, 'f-masks.bin')).size > 0, "F's masks recorded from the device");
    const report = await cli(['report', runDir]);
    assert.equal(report.code, 0, report.err);
    assert.match(report.err, /^ran on: webgpu on google swiftshader \(SwiftShader driver [\d.]+\) \(1 run\)$/m);
    assert.match(fs.readFileSync(path.join(runDir, 'report.html'), 'utf8'), /Ran on: webgpu on google swiftshader/);

    // tensorflow-gpu: refused before loading, pointing to webgpu.
    const tfgpu = await cli(['run', recipe, '--set', 'runtime.backend=tensorflow-gpu']);
    assert.equal(tfgpu.code, 1);
    assert.match(tfgpu.err, /tensorflow-gpu' is not available: it is not supported/);
    assert.match(tfgpu.err, /runtime\.backend: webgpu/);

    // No adapter at all (in a process of its own: the adapter is probed once per process).
    const bin = path.join(REPO, 'bin', 'childtune.js');
    const none = await promisify(execFile)(process.execPath, [bin, 'run', recipe], {
      env: { ...process.env, ...env, VK_ICD_FILENAMES: path.join(dir, 'missing_icd.json') },
    }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((none as { code: number }).code, 1);
    assert.match((none as { stderr: string }).stderr, /backend 'webgpu' is not available: no Vulkan driver manifest/);
    assert.match((none as { stderr: string }).stderr, /npm install webgpu/);
    assert.doesNotMatch((none as { stderr: string }).stderr, /\n\s+at /);
  });

  test("a run on the device stopped by SIGTERM resumes to the uninterrupted run's losses, metrics and weights", async () => {
    const { recipe } = await deviceProject(
      `strategy: {kind: child-tuning-f, reserve_p: 0.3}
training: {batch_size: 4, epochs: 2, seed: 3, log_every: 1, checkpoint_every: 1}`,
    );
    const whole = await cli(['run', recipe, '--json']);
    assert.equal(whole.code, 0, whole.err);
    const reference = JSON.parse(whole.out)[0].dir as string;

    // SIGTERM once step 2 is checkpointed: the run stops at its next safe point and writes its checkpoint there.
    const runDir = await runUntilKilled(recipe, 2, [], 'SIGTERM');
    assert.equal(JSON.parse(fs.readFileSync(path.join(runDir, 'error.json'), 'utf8')).state, 'interrupted');
    const again = await cli(['run', '--resume', runDir]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.err, /resume: continuing from step \d+/);
    assert.deepEqual(resultsOf(runDir), resultsOf(reference));
    assert.deepEqual(metricsOf(runDir), metricsOf(reference));
    assert.deepEqual(modelBytes(runDir), modelBytes(reference));
  });
});

/**
 * A project for runs on the device: a random BERT-tiny with a vocabulary of a few hundred words (so SwiftShader
 * evaluates the dev set in seconds), 17 SST-2 training and 9 dev rows, and a recipe on webgpu with `settings`.
 */
async function deviceProject(settings: string) {
  const dir = tmpProject();
  const vocab = write(
    dir,
    'vocab.txt',
    fs.readFileSync(path.join(TINY, 'vocab.txt'), 'utf8').split('\n').slice(0, 400).join('\n'),
  );
  const init = await cli(['model', 'init', '--size', 'tiny', '--out', path.join(dir, 'model'), '--vocab', vocab]);
  assert.equal(init.code, 0, init.err);
  const data = path.join(dir, 'SST-2');
  fs.mkdirSync(data);
  for (const [split, n] of [
    ['train', 17],
    ['dev', 9],
  ] as const) {
    const lines = fs.readFileSync(path.join(GLUE, 'SST-2', `${split}.tsv`), 'utf8').split('\n');
    fs.writeFileSync(path.join(data, `${split}.tsv`), lines.slice(0, n).join('\n') + '\n');
  }
  const recipe = write(
    dir,
    'r.yaml',
    `version: 1
model: {path: ./model, max_seq_length: 16}
dataset: {task: glue/sst-2, dir: ./SST-2}
${settings}
runtime: {backend: webgpu}
`,
  );
  return { dir, recipe };
}

function popcount8(x: number) {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
}
