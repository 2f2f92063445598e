/** The GPU (webgpu): each shape's step in a process of its own, and the agreement check against the CPU path. */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectBackend } from '../src/engine/backend.js';
import { clipCoefficient } from '../src/engine/optimizer.js';
import { Rng } from '../src/engine/rng.js';
import { startPool, threadsFor } from '../src/run/parallel.js';
import { accumulateFisher, selectChild } from '../src/strategies/fisher.js';
import type { Strategy } from '../src/strategies/strategy.js';
import { benchStrategies } from './cpu-step.js';
import { gpuMarkdown, markdown, measuredByHand } from './markdown.js';
import {
  BATCH,
  median,
  modelFor,
  randomBatch,
  ROOT,
  runMode,
  SEQ,
  type Shape,
  SHAPES,
  stepFlops,
  VOCAB,
} from './shapes.js';

/** One shape's step on the GPU (webgpu), in a process of its own: vanilla, F and D interleaved, and D's fisher pass. */
export async function webgpuChild(job: { shape: Shape; steps: number; warmup: number }) {
  const backend = await selectBackend('webgpu');
  const model = modelFor(job.shape);
  const pool = await startPool(model, {
    threads: 1,
    backend: 'webgpu',
    adam: { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
  });
  const rng = new Rng(1);
  const batches = Array.from({ length: 2 }, () => randomBatch(rng));
  const strategies = benchStrategies(model, rng);
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(strategies).map((k) => [k, []]));
  let step = 0;
  const oneStep = async (s: Strategy) => {
    const t0 = performance.now();
    const { norm } = await pool.gradients(batches[step++ % batches.length], null, step);
    await pool.update(1e-4, clipCoefficient(norm, 1), s);
    return performance.now() - t0;
  };
  const names = Object.keys(strategies);
  for (const name of names) {
    await pool.setStrategy(strategies[name]);
    for (let i = 0; i < job.warmup; i++) await oneStep(strategies[name]);
  }
  for (let round = 0; round < job.steps; round++)
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length];
      await pool.setStrategy(strategies[name]);
      times[name].push(await oneStep(strategies[name]));
    }
  // D's fisher pass: a batch of the stage as it runs (per-batch gradients, clipped per tensor, squared, summed).
  const examples = {
    encodings: Array.from({ length: BATCH }, () => ({
      tokens: [],
      inputIds: Array.from({ length: SEQ }, () => rng.int(VOCAB)),
      tokenTypeIds: new Array<number>(SEQ).fill(0),
      attentionMask: new Array<number>(SEQ).fill(1),
    })),
    labels: Array.from({ length: BATCH }, () => rng.int(2)),
  };
  const settings = { estimator: 'batch', batch_size: BATCH, clip: 1, scope: 'encoder', seed: 0 } as const;
  const f0 = performance.now();
  const fisher = await accumulateFisher(pool, model.specs, examples, settings, true);
  const fisherMs = performance.now() - f0;
  const sel = selectChild(model, fisher.fisher, 0.3, 'encoder');
  await pool.close();
  const step_ms = Object.fromEntries(names.map((n) => [n, median(times[n])]));
  return {
    shape: job.shape,
    device: backend.device,
    steps: job.steps,
    step_ms,
    gflops: stepFlops(SHAPES[job.shape]) / step_ms.vanilla / 1e6,
    f_overhead: step_ms['child-tuning-f'] / step_ms.vanilla - 1,
    d_overhead: step_ms['child-tuning-d'] / step_ms.vanilla - 1,
    fisher_batch_ms: fisherMs,
    fisher_kept: sel.kept,
  };
}

export type GpuRow = Awaited<ReturnType<typeof webgpuChild>>;

/**
 * The agreement check at a bench shape, for a machine with a GPU: vanilla, F and D for `steps` steps (dropout off)
 * on the CPU path and on the GPU from the same random model and batches; each side in a process of its own. Prints
 * the largest relative loss difference per strategy, whether F's masks were identical, and the largest weight difference.
 */
export async function agreementSide(job: { shape: Shape; steps: number; backend: 'wasm' | 'webgpu' }) {
  const backend = await selectBackend(job.backend);
  const rng = new Rng(1);
  const batches = Array.from({ length: job.steps }, () => randomBatch(rng));
  const out: Record<string, { losses: number[]; masks: string; weights: string }> = {};
  for (const name of ['vanilla', 'child-tuning-f', 'child-tuning-d']) {
    const model = modelFor(job.shape);
    const pool = await startPool(model, {
      threads: threadsFor(0, backend.name),
      backend: backend.name,
      adam: { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
    });
    const strategy = benchStrategies(model, new Rng(2))[name];
    const masks = createHash('sha256');
    await pool.setStrategy(strategy);
    const losses: number[] = [];
    const observer = {
      readsBits: true,
      before: (step: number, bits: Uint8Array[]) => strategy.before(step, bits),
      after: (step: number, bits: Uint8Array[], sizes: readonly number[], kept: readonly number[]) => {
        strategy.after(step, bits, sizes, kept);
        if (name === 'child-tuning-f') for (const b of bits) masks.update(b);
      },
    };
    for (const b of batches) {
      const { loss, norm } = await pool.gradients(b, null, losses.length);
      losses.push(loss);
      await pool.update(1e-4, clipCoefficient(norm, 1), observer);
    }
    await pool.syncToHost();
    const weights = path.join(os.tmpdir(), `childtune-agreement-${job.backend}-${name}.bin`);
    fs.writeFileSync(
      weights,
      Buffer.concat(model.values.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength))),
    );
    out[name] = { losses, masks: masks.digest('hex'), weights };
    await pool.close();
  }
  return { device: backend.device, out };
}

export function webgpuAgreement(shape: Shape, steps: number) {
  const side = (backend: string) => {
    type Side = Awaited<ReturnType<typeof agreementSide>>;
    return runMode<Side>('--agreement-side', `agreement on ${backend}`, { shape, steps, backend });
  };
  const [cpu, gpu] = [side('wasm'), side('webgpu')];
  const report = Object.fromEntries(
    Object.keys(cpu.out).map((name) => {
      const [a, b] = [cpu.out[name], gpu.out[name]];
      const [wa, wb] = [a.weights, b.weights].map((f) => new Float32Array(fs.readFileSync(f).buffer.slice(0)));
      let worst = 0;
      for (let j = 0; j < wa.length; j++) worst = Math.max(worst, Math.abs(wa[j] - wb[j]));
      return [
        name,
        {
          loss_rel_diff: Math.max(...a.losses.map((l, k) => Math.abs(l - b.losses[k]) / Math.abs(l))),
          f_masks_identical: name === 'child-tuning-f' ? a.masks === b.masks : undefined,
          weights_max_abs_diff: worst,
        },
      ];
    }),
  );
  process.stdout.write(JSON.stringify({ shape, steps, device: gpu.device, agreement: report }, null, 2) + '\n');
}

/**
 * `npm run bench -- --backend webgpu [--shapes ...] [--quick]`: each shape's GPU step on the adapter Dawn finds,
 * into bench/results.json's `webgpu` and BENCHMARKS.md's GPU section (the CPU rows are kept as they are).
 */
export function webgpuBench(shapes: Shape[], quick: boolean) {
  const rows: GpuRow[] = [];
  for (const shape of shapes) {
    process.stderr.write(`bench: webgpu ${shape}\n`);
    const job = { shape, steps: quick ? 1 : 5, warmup: 1 };
    rows.push(runMode<GpuRow>('--webgpu-child', `webgpu ${shape}`, job));
  }
  const resultsFile = path.join(ROOT, 'bench', 'results.json');
  const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
  const kept: GpuRow[] = (results.webgpu?.rows ?? []).filter((r: GpuRow) => !shapes.includes(r.shape));
  results.webgpu = {
    date: new Date().toISOString().slice(0, 10),
    rows: [...kept, ...rows].sort(
      (a, b) => Object.keys(SHAPES).indexOf(a.shape) - Object.keys(SHAPES).indexOf(b.shape),
    ),
  };
  fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
  const benchmarks = path.join(ROOT, 'BENCHMARKS.md');
  fs.writeFileSync(benchmarks, markdown(results) + measuredByHand(benchmarks));
  process.stdout.write(gpuMarkdown(results.webgpu));
}
