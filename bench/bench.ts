/**
 * `npm run bench`: the performance suite behind BENCHMARKS.md. Every figure comes from the product's own code
 * paths (DataParallel, accumulateFisher, selectChild, the CLI), each configuration in a fresh child process so
 * its peak RSS is its own. Writes bench/results.json and BENCHMARKS.md; compares with PyTorch on the same
 * machine when /usr/bin/python3 can import torch.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/engine/backend.js';
import { batchOf } from '../src/engine/batch.js';
import { initialValue, initStrategyParams, loadPretrained } from '../src/engine/checkpoint.js';
import { parameterCounts, parseModelConfig } from '../src/engine/config.js';
import { matMul } from '../src/engine/kernels.js';
import { EncoderClassifier } from '../src/engine/model.js';
import type { ModelModifier } from '../src/engine/modules/modifier.js';
import {
  arithmeticOf,
  chooseKernels,
  kernelPeaks,
  nativeBlocks,
  nativeKernelNames,
  nativeKernels,
  selectKernel,
} from '../src/engine/native.js';
import { clipCoefficient } from '../src/engine/optimizer.js';
import { sizeOf, trains } from '../src/engine/params.js';
import { Rng, streamSeed } from '../src/engine/rng.js';
import { estimateMemory } from '../src/plan/estimate.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { DataParallel, startPool, threadsFor } from '../src/run/parallel.js';
import { deviceLabel } from '../src/engine/webgpu/device.js';
import { accumulateFisher, selectChild } from '../src/strategies/fisher.js';
import { anchorFor, modifiersFor, STRATEGIES, strategyFor } from '../src/strategies/registry.js';
import { childTuningD } from '../src/strategies/child-tuning-d/index.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import type { Strategy } from '../src/strategies/strategy.js';
import { vanilla } from '../src/strategies/vanilla/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * The shapes, and how each is measured. `full`: strategies interleaved over `steps` rounds, fisher against an
 * epoch, a one-thread run, then PyTorch. `paired`: `rounds` times our process then PyTorch's, each a warm-up
 * step and `steps` measured steps, so drift of the machine hits both (BERT-base and -large steps take seconds
 * to a minute; together they fit in about 15 minutes).
 */
const SHAPES = {
  'bert-tiny': { layers: 2, hidden: 128, heads: 2, mode: 'full', rounds: 1, steps: 301, strategies: true },
  'bert-mini': { layers: 4, hidden: 256, heads: 4, mode: 'full', rounds: 1, steps: 61, strategies: true },
  'bert-small': { layers: 4, hidden: 512, heads: 8, mode: 'full', rounds: 1, steps: 21, strategies: true },
  'bert-base': { layers: 12, hidden: 768, heads: 12, mode: 'paired', rounds: 2, steps: 4, strategies: true },
  'bert-large': { layers: 24, hidden: 1024, heads: 16, mode: 'paired', rounds: 2, steps: 2, strategies: false },
} as const;
const SEQ = 128;
const BATCH = 16;
const VOCAB = 30522;

type Shape = keyof typeof SHAPES;
interface ChildJob {
  shape: Shape;
  threads: number;
  steps: number;
  /** Warm-up steps per strategy before the measured rounds. */
  warmup: number;
  /** Vanilla, F and D interleaved, or vanilla only. */
  strategies: boolean;
  /** Examples for fisher against an epoch; 0 skips it. */
  fisherExamples: number;
  /** A saved checkpoint to load (start-up is then timed as a run does it: backend, weights, workers). */
  checkpoint?: string;
  /** The matrix kernel to run; default the one a run with runtime.kernels: auto picks here. */
  kernel?: string;
}

/** The kernel a run with runtime.kernels: auto and fp32 picks on this machine: what the bench's main rows measure. */
function productKernel(): string {
  const c = chooseKernels('auto', 'fp32');
  return 'kernel' in c ? c.kernel : 'wasm';
}

/** A registry-driven job: every registered strategy's step time against vanilla's, each on its own model and pool. */
interface RegistryJob {
  shape: Shape;
  steps: number;
  warmup: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * A 95% bootstrap interval of the median of `xs` (2000 resamples from a fixed seed, so a rerun on the same numbers
 * prints the same interval): how far a median over this many noisy rounds can be trusted.
 */
function medianInterval(xs: number[]): [number, number] {
  const rng = new Rng(12345);
  const medians = Array.from({ length: 2000 }, () => median(xs.map(() => xs[rng.int(xs.length)])));
  medians.sort((a, b) => a - b);
  return [medians[Math.floor(0.025 * medians.length)], medians[Math.floor(0.975 * medians.length)]];
}

/** Per-round figures of F and D against vanilla (null where the strategies did not run). */
interface Samples {
  f_overhead: number[] | null;
  d_overhead: number[] | null;
  f_mask_cost: number[] | null;
  d_mask_cost: number[] | null;
}

/** A row's overheads and mask costs: the medians of its per-round figures, which it keeps for their intervals. */
function figuresOf(samples: Samples) {
  const of = (xs: number[] | null) => (xs ? median(xs) : null);
  return {
    overhead: { f: of(samples.f_overhead), d: of(samples.d_overhead) },
    mask_cost: { f: of(samples.f_mask_cost), d: of(samples.d_mask_cost) },
    samples,
  };
}

/** Training FLOPs of one step: forward (2 per multiply-add) plus backward (twice the forward). */
function stepFlops(s: (typeof SHAPES)[Shape]) {
  const h = s.hidden;
  const perToken = s.layers * (2 * (4 * h * h + 2 * h * 4 * h) + 4 * SEQ * h);
  return 3 * perToken * BATCH * SEQ;
}

function modelFor(shape: Shape, modifiers: readonly ModelModifier[] = []) {
  const s = SHAPES[shape];
  const config = parseModelConfig(
    {
      model_type: 'bert',
      vocab_size: VOCAB,
      hidden_size: s.hidden,
      num_hidden_layers: s.layers,
      num_attention_heads: s.heads,
      intermediate_size: 4 * s.hidden,
      max_position_embeddings: 512,
      type_vocab_size: 2,
    },
    '<bench>',
    'bert',
  );
  const model = new EncoderClassifier(config, 2, undefined, modifiers);
  const rng = new Rng(0);
  // The model's own parameters at random, as if loaded; a strategy's from the seed as the loader draws them.
  model.specs.forEach((spec, i) => {
    if (spec.source !== 'strategy') model.values[i] = initialValue(spec, rng);
  });
  initStrategyParams(model, 0);
  return model;
}

/** A kind's options as a recipe gets them by default: its fragment's defaults, and its examples where it needs a value (reserve_p). */
function defaultOptions(kind: string): Recipe['strategy'] {
  const file = path.join(ROOT, 'src', 'strategies', kind, 'schema.json');
  const properties = JSON.parse(fs.readFileSync(file, 'utf8')).properties as Record<
    string,
    { default?: unknown; examples?: unknown[] }
  >;
  const options: Record<string, unknown> = { kind };
  for (const [key, p] of Object.entries(properties)) {
    if (key === 'kind') continue;
    if (p.default !== undefined) options[key] = p.default;
    else if (key === 'reserve_p') options[key] = p.examples?.[0];
  }
  return options as unknown as Recipe['strategy'];
}

/**
 * Every registered strategy (its default options; D with a random child network of the default reserve_p) against
 * vanilla: its model with its modifiers and a pool keeping the anchor when it asks, beside one vanilla pool kept for
 * the whole run; after warm-up, steps alternate between the two (each round starting with the other), and the
 * overhead is the median of the per-round ratios, so drift of the machine hits both sides alike.
 */
async function registryChild(job: RegistryJob) {
  const backend = await selectBackend('auto');
  const threads = threadsFor(0, backend.name);
  const kernel = productKernel();
  selectKernel(kernel);
  const rng = new Rng(1);
  const batches = Array.from({ length: 4 }, () => randomBatch(rng));
  const adam = { lr: 1e-4, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 };
  const poolFor = async (options: Recipe['strategy']) => {
    const model = modelFor(job.shape, modifiersFor(options));
    const dp = await DataParallel.start(model, {
      threads,
      backend: backend.name,
      kernel,
      adam,
      anchor: anchorFor(options),
    });
    const masks = model.specs.map((s) =>
      s.group === 'encoder' ? new Uint8Array(Math.ceil(sizeOf(s) / 8)).map(() => rng.int(256)) : undefined,
    );
    const recipe = { strategy: options, training: { seed: 1 } } as unknown as Recipe;
    const strategy = strategyFor(recipe, model.specs, masks);
    await dp.setStrategy(strategy);
    let step = 0;
    const oneStep = async () => {
      const t0 = performance.now();
      // A step seed as training passes one: the modules' per-step draws (Mixout's masks, diff pruning's gates) and a
      // consistency term's second pass (R3F) run only with it.
      const { norm } = await dp.gradients(batches[step % batches.length], step, streamSeed(1, step));
      await dp.update(1e-4, clipCoefficient(norm, 1), strategy);
      step++;
      return performance.now() - t0;
    };
    return { model, dp, oneStep };
  };
  const base = await poolFor(defaultOptions('vanilla'));
  const vanillaTimes: number[] = [];
  const rows: {
    kind: string;
    step_ms: number;
    overhead: number;
    overhead_interval: [number, number];
    trainable_share: number;
    options: Recipe['strategy'];
  }[] = [];
  for (const kind of STRATEGIES.map((d) => d.kind).filter((k) => k !== 'vanilla')) {
    const options = defaultOptions(kind);
    const other = await poolFor(options);
    for (let i = 0; i < job.warmup; i++) {
      await base.oneStep();
      await other.oneStep();
    }
    const times: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < job.steps; round++) {
      let v: number;
      let t: number;
      if (round % 2 === 0) {
        v = await base.oneStep();
        t = await other.oneStep();
      } else {
        t = await other.oneStep();
        v = await base.oneStep();
      }
      vanillaTimes.push(v);
      times.push(t);
      ratios.push(t / v - 1);
    }
    await other.dp.close();
    const specs = other.model.specs;
    const total = specs.reduce((a, s) => a + sizeOf(s), 0);
    const trainable = specs.reduce((a, s) => a + (trains(s) ? sizeOf(s) : 0), 0);
    rows.push({
      kind,
      step_ms: median(times),
      overhead: median(ratios),
      overhead_interval: medianInterval(ratios),
      trainable_share: trainable / total,
      options,
    });
  }
  await base.dp.close();
  return { threads, vanilla_ms: median(vanillaTimes), strategies: rows };
}

function randomBatch(rng: Rng) {
  const encs = Array.from({ length: BATCH }, () => ({
    inputIds: Array.from({ length: SEQ }, () => rng.int(VOCAB)),
    tokenTypeIds: new Array(SEQ).fill(0),
  }));
  return batchOf(
    encs,
    SEQ,
    Array.from({ length: BATCH }, () => rng.int(2)),
  );
}

/** Vanilla, F at p = 0.3 and D with a random child network over the encoder: the strategies every row times. */
function benchStrategies(model: EncoderClassifier, rng: Rng): Record<string, Strategy> {
  const dMasks = model.specs.map((s) =>
    s.group === 'encoder' ? new Uint8Array(Math.ceil(sizeOf(s) / 8)).map(() => rng.int(256)) : undefined,
  );
  return {
    vanilla: vanilla(),
    'child-tuning-f': childTuningF(0.3, 'all', model.specs, 7),
    'child-tuning-d': childTuningD(dMasks, false),
  };
}

/** One configuration in this process: start-up, step times per strategy, fisher against an epoch, peak RSS. */
async function child(job: ChildJob) {
  const t0 = performance.now();
  const backend = await selectBackend('auto');
  const t1 = performance.now();
  const model = job.checkpoint ? loadPretrained(job.checkpoint, { numLabels: 2, seed: 0 }).model : modelFor(job.shape);
  const t2 = performance.now();
  const threads = job.threads || threadsFor(0, backend.name);
  const kernel = job.kernel ?? productKernel();
  selectKernel(kernel);
  const dp = await DataParallel.start(model, {
    threads,
    backend: backend.name,
    kernel,
    adam: { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
  });
  const startup = {
    backend_ms: t1 - t0,
    weights_ms: t2 - t1,
    workers_ms: performance.now() - t2,
    total_ms: performance.now() - t0,
    weights: job.checkpoint ? 'loaded from model.safetensors' : 'random init',
  };
  const rng = new Rng(1);
  const batches = Array.from({ length: 4 }, () => randomBatch(rng));
  const all = benchStrategies(model, rng);
  const strategies = job.strategies ? all : { vanilla: all.vanilla };
  const times: Record<string, number[]> = { vanilla: [], 'child-tuning-f': [], 'child-tuning-d': [] };
  let step = 0;
  const updates: Record<string, number[]> = { vanilla: [], 'child-tuning-f': [], 'child-tuning-d': [] };
  const oneStep = async (s: Strategy) => {
    const t0 = performance.now();
    const { norm } = await dp.gradients(batches[step++ % batches.length], step);
    const t1 = performance.now();
    await dp.update(1e-4, clipCoefficient(norm, 1), s);
    const t2 = performance.now();
    updates[s.kind].push(t2 - t1);
    return t2 - t0;
  };
  for (const s of Object.values(strategies)) {
    await dp.setStrategy(s);
    for (let i = 0; i < job.warmup; i++) await oneStep(s);
  }
  // Interleaved rounds, each starting with a different strategy so no strategy always runs first.
  const names = Object.keys(strategies);
  for (let round = 0; round < job.steps; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length];
      await dp.setStrategy(strategies[name]);
      times[name].push(await oneStep(strategies[name]));
    }
  }
  // Overhead as the median of per-round ratios: neighbouring steps share the machine's state of the moment,
  // so pairing cancels drift that a ratio of two medians keeps.
  const ran = (name: string) => times[name].length > 0;
  const ratios = (name: string) => (ran(name) ? times[name].map((t, i) => t / times.vanilla[i] - 1) : null);
  // The masks act only in the update round, so its paired difference is the mask's cost without the
  // forward and backward passes' noise.
  const measured = (name: string) => updates[name].slice(-job.steps);
  const vanillaStep = median(times.vanilla);
  const costs = (name: string) => {
    const vanilla = measured('vanilla');
    return ran(name) ? measured(name).map((t, i) => (t - vanilla[i]) / vanillaStep) : null;
  };
  // The per-round figures, for the medians and their intervals (pooled over processes at base).
  const samples = {
    f_overhead: ratios('child-tuning-f'),
    d_overhead: ratios('child-tuning-d'),
    f_mask_cost: costs('child-tuning-f'),
    d_mask_cost: costs('child-tuning-d'),
  };
  // Fisher (batch estimator) against one training epoch over the same examples, alternated three times
  // (median of each) so a slow phase of the machine does not land on one side only.
  const fisher = job.fisherExamples
    ? await fisherAgainstEpoch(dp, model, strategies['child-tuning-d'], job.fisherExamples, rng)
    : null;
  await dp.close();
  const recipe = {
    strategy: { kind: 'child-tuning-d', reserve_p: 0.3 },
    training: { batch_size: BATCH },
    model: { max_seq_length: SEQ },
    runtime: { threads },
  } as unknown as Recipe;
  const estimate = estimateMemory(model.config, recipe, 2, 'train');
  return {
    backend: backend.name,
    kernels: nativeKernels().why,
    threads,
    params: parameterCounts(model.config, 2).total,
    startup,
    step_ms: Object.fromEntries(
      Object.entries(times)
        .filter(([, v]) => v.length)
        .map(([k, v]) => [k, median(v)]),
    ),
    vanilla_ms: times.vanilla,
    ...figuresOf(samples),
    fisher,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    estimate_bytes: estimate.total,
    estimate,
  };
}

/** Fisher (batch estimator) against one training epoch over the same examples, and the child selection. */
async function fisherAgainstEpoch(dp: DataParallel, model: EncoderClassifier, d: Strategy, examples: number, rng: Rng) {
  const encodings = Array.from({ length: examples }, () => ({
    inputIds: Array.from({ length: SEQ }, () => rng.int(VOCAB)),
    tokenTypeIds: new Array(SEQ).fill(0),
    attentionMask: new Array(SEQ).fill(1),
    tokens: [] as string[],
  }));
  const labels = encodings.map(() => rng.int(2));
  await dp.setStrategy(d);
  const fisherRuns: number[] = [];
  const epochRuns: number[] = [];
  let acc: Awaited<ReturnType<typeof accumulateFisher>> | undefined;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    acc = await accumulateFisher(
      dp,
      model.specs,
      { encodings, labels },
      { estimator: 'batch', batch_size: BATCH, clip: 1, scope: 'encoder', seed: 0 },
      true,
    );
    fisherRuns.push(performance.now() - t0);
    const t1 = performance.now();
    for (let start = 0; start < encodings.length; start += BATCH) {
      const { norm } = await dp.gradients(
        batchOf(encodings.slice(start, start + BATCH), SEQ, labels.slice(start, start + BATCH)),
        start,
      );
      await dp.update(1e-4, clipCoefficient(norm, 1), d);
    }
    epochRuns.push(performance.now() - t1);
  }
  const t2 = performance.now();
  selectChild(model, acc!.fisher, 0.3, 'encoder');
  return {
    fisher_ms: median(fisherRuns),
    epoch_ms: median(epochRuns),
    select_ms: performance.now() - t2,
    in_scope: acc!.fisher.reduce((a, f) => a + f.length, 0),
  };
}

/**
 * PyTorch's step at a shape, in a process of its own: at least two warm-up steps (a process's first steps are slow),
 * the same thread count, the thread-count variables of OpenBLAS, OpenMP and MKL unset so torch.set_num_threads alone
 * decides (OPENBLAS_CORETYPE stays: without it OpenBLAS 0.3.21 runs a generic kernel on a CPU it does not know);
 * `autocast`: the step under torch.autocast('cpu', bfloat16), the peer of training.precision: bf16.
 */
function torchPeer(shape: Shape, threads: number, steps = 12, warmup = 3, autocast = false) {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0)
    return {
      available: false,
      why: '/usr/bin/python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread)',
    };
  const blas = torchBlas();
  if (blas.reference)
    return {
      available: false,
      why: `PyTorch's BLAS is the unoptimised reference BLAS (${blas.path}), not a peer (apt-get install libopenblas0-pthread)`,
    };
  const script = path.resolve(ROOT, '..', 'shared', 'bench', 'torch_bert_step.py');
  if (!fs.existsSync(script)) return { available: false, why: `${script} not found` };
  const s = SHAPES[shape];
  // Only the thread counts: OPENBLAS_CORETYPE and the like pick OpenBLAS's kernels for a CPU it does not know.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(OPENBLAS|OMP|GOTO|MKL)_NUM_THREADS$/.test(k)),
  );
  const args = [
    '--layers',
    String(s.layers),
    '--hidden',
    String(s.hidden),
    '--heads',
    String(s.heads),
    '--seq',
    String(SEQ),
    '--batch',
    String(BATCH),
    '--steps',
    String(steps),
    '--warmup',
    String(Math.max(2, warmup)),
    '--threads',
    String(threads),
  ];
  const out = execFileSync(
    '/usr/bin/python3',
    autocast ? [path.join(ROOT, 'bench', 'torch_autocast.py'), script, ...args] : [script, ...args],
    { encoding: 'utf8', env },
  );
  return { available: true, blas: blas.path, ...JSON.parse(out.trim().split('\n').at(-1)!) };
}

/**
 * The BLAS library Debian's PyTorch loads (its matrix products go through libblas.so.3, an alternative): the netlib
 * reference BLAS, the default without OpenBLAS installed, is tens of times slower and would make any ratio meaningless.
 * Probed once per bench process: each probe starts Python and imports torch.
 */
let blasFound: { path: string; reference: boolean } | undefined;
function torchBlas(): { path: string; reference: boolean } {
  if (blasFound) return blasFound;
  const probe = spawnSync(
    '/usr/bin/python3',
    [
      '-c',
      'import os, torch; torch.ones(8, 8) @ torch.ones(8, 8); ' +
        'print(next((os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps") if "blas" in l.split()[-1]), "none"))',
    ],
    { encoding: 'utf8' },
  );
  const found = probe.stdout.trim().split('\n').at(-1) ?? 'none';
  return (blasFound = { path: found, reference: /\/blas\/libblas\.so/.test(found) });
}

/** PyTorch's steady-state step: the median over `processes` processes of each one's median step. */
function torchPeers(shape: Shape, threads: number, processes: number, steps: number, autocast = false) {
  const runs = Array.from({ length: processes }, () => torchPeer(shape, threads, steps, 2, autocast));
  const ok = runs.filter((r) => r.available);
  if (!ok.length) return runs[0];
  return { ...ok[0], step_ms_median: median(ok.map((r) => r.step_ms_median)), processes: ok.length, rounds: ok };
}

/** Wall time of a CLI command, median of five fresh processes. */
function cliMs(args: string[]) {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    execFileSync(process.execPath, [path.join(ROOT, 'bin', 'childtune.js'), ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        CHILDTUNE_DATA: path.resolve(ROOT, '..', 'shared', 'data'),
        CHILDTUNE_MODELS: path.resolve(ROOT, '..', 'shared', 'fixtures'),
      },
      stdio: 'pipe',
    });
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Threshold selection time per element at growing sizes: flat means linear. */
function selectionScaling() {
  const rng = new Rng(3);
  return [1e5, 1e6, 4e6].map((n) => {
    const fisher = Float32Array.from({ length: n }, () => rng.next() ** 4);
    const fake = {
      specs: [{ name: 'w', shape: [n], transposed: false, decay: true, group: 'encoder', init: 'normal' }],
      indexOf: () => 0,
    } as unknown as EncoderClassifier;
    const t0 = performance.now();
    selectChild(fake, [fisher], 0.3, 'encoder');
    const ms = performance.now() - t0;
    return { elements: n, ms, ns_per_element: (ms * 1e6) / n };
  });
}

/**
 * One thread's matrix-product rate on the products of a BERT-base and -large layer (8 sequences of 128 tokens),
 * plain and with either operand transposed as the backward pass has them, every native kernel and the wasm kernel
 * alternated in one process; medians of five.
 */
async function kernelRates() {
  await selectBackend('wasm');
  const shapes: [number, number, number][] = [
    [1024, 768, 768],
    [1024, 768, 3072],
    [1024, 3072, 768],
    [1024, 1024, 4096],
    [1024, 4096, 1024],
    [128, 64, 128],
  ];
  const paths = [...nativeKernelNames(), 'wasm'];
  const rows = [];
  for (const [M, K, N] of shapes) {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
    ]) {
      const a = tf.randomUniform(ta ? [K, M] : [M, K]) as tf.Tensor2D;
      const b = tf.randomUniform(tb ? [N, K] : [K, N]) as tf.Tensor2D;
      const times: Record<string, number[]> = Object.fromEntries(paths.map((p) => [p, []]));
      for (let rep = 0; rep < 6; rep++) {
        for (const p of paths) {
          selectKernel(p);
          // The wasm backend computes a product when it is called; reading it back (a fresh JavaScript array, whose
          // pages this VM faults in at up to 10 ms for a 1024 x 768 result) is no part of the product's rate.
          const t0 = performance.now();
          const c = matMul(a, b, ta, tb);
          const ms = performance.now() - t0;
          c.dataSync();
          if (rep > 0) times[p].push(ms);
          c.dispose();
        }
      }
      tf.dispose([a, b]);
      rows.push({
        shape: `${M}x${K}x${N}`,
        transposed: ta ? 'A' : tb ? 'B' : 'none',
        gflops: Object.fromEntries(paths.map((p) => [p, (2 * M * K * N) / median(times[p]) / 1e6])),
      });
    }
  }
  selectKernel(undefined);
  return { paths, rows };
}

/**
 * BERT-base's vanilla step in each matrix arithmetic this CPU has (exact, fma, bf16; one process each, two warm-up
 * steps), beside PyTorch's fp32 step and its bf16 autocast step (each the median over processes).
 */
interface ArithmeticRow {
  shape: Shape;
  ours: Record<string, { kernel: string; step_ms: number }>;
  pytorch_fp32_ms: number | null;
  pytorch_bf16_ms: number | null;
  pytorch_bf16_why?: string;
}

function arithmeticRow(shape: Shape, quick: boolean, torchFp32: number | null): ArithmeticRow {
  const s = SHAPES[shape];
  const steps = quick ? 1 : s.steps;
  const kernels = ['exact', 'fma', 'bf16']
    .map((a) => nativeKernelNames().find((k) => arithmeticOf(k) === a))
    .filter((k): k is string => !!k);
  const ours: Record<string, { kernel: string; step_ms: number }> = Object.fromEntries(
    kernels.map((kernel) => {
      process.stderr.write(`bench: ${shape} on ${kernel}\n`);
      const r = runChild({ shape, threads: 0, steps, warmup: 2, strategies: false, fisherExamples: 0, kernel });
      return [arithmeticOf(kernel), { kernel, step_ms: r.step_ms.vanilla as number }];
    }),
  );
  const bf16Peer = kernels.some((k) => arithmeticOf(k) === 'bf16')
    ? torchPeers(shape, threadsFor(0, 'wasm'), quick ? 1 : 2, steps, true)
    : null;
  return {
    shape,
    ours,
    pytorch_fp32_ms: torchFp32,
    pytorch_bf16_ms: bf16Peer?.available ? bf16Peer.step_ms_median : null,
    ...(bf16Peer && !bf16Peer.available && { pytorch_bf16_why: bf16Peer.why }),
  };
}

/** The CPU as /proc/cpuinfo names it, with the flags that decide its kernels. */
function cpuOf() {
  const info = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = /^flags\s*:(.*)$/m.exec(info)?.[1].trim().split(/\s+/) ?? [];
  const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
  return {
    model: /^model name\s*:\s*(.*)$/m.exec(info)?.[1].trim() ?? os.cpus()[0]?.model ?? 'unknown',
    vendor: /^vendor_id\s*:\s*(.*)$/m.exec(info)?.[1].trim() ?? 'unknown',
    family: family === undefined ? null : Number(family),
    flags: ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile', 'amx_bf16'].filter((f) => flags.includes(f)),
  };
}

/**
 * The machine's measured peak: each native kernel's register-only multiply-add rate (native/gemm.c js_peak, in
 * thread CPU time), on one core, and on every core at once (one worker thread each, started together behind a
 * barrier). The fp32 peak is the fastest fp32 kernel's; a share of it above 100% would be a bug in the bench.
 */
async function measuredPeak() {
  const kernels = nativeKernelNames();
  const cores = os.availableParallelism();
  const one = kernels.length ? kernelPeaks(kernels, 5) : [];
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const all = await Promise.all(
    Array.from(
      { length: kernels.length ? cores : 0 },
      () =>
        new Promise<number[]>((resolve, reject) => {
          const w = new Worker(fileURLToPath(import.meta.url), { workerData: { peak: kernels, barrier, cores } });
          w.once('message', resolve).once('error', reject);
        }),
    ),
  );
  const by = Object.fromEntries(
    kernels.map((k, j) => [k, { one_core: one[j], all_cores: all.reduce((sum, w) => sum + w[j], 0) }]),
  );
  const fp32 = Math.max(0, ...kernels.filter((k) => arithmeticOf(k) !== 'bf16').map((k) => by[k].all_cores));
  return {
    cpu: cpuOf(),
    cores,
    kernels: by,
    gflops: fp32 || null,
    bf16_gflops: by.avx512bf16?.all_cores ?? null,
    how: kernels.length
      ? `measured: each native kernel's multiply-add in registers (native/gemm.c), ${cores} threads at once; fp32 is the fastest of ${kernels.filter((k) => arithmeticOf(k) !== 'bf16').join(', ')}`
      : 'not measured: no native kernels on this machine',
  };
}

/** A peak worker: waits until every worker has started, then measures the kernels on its core. */
function peakWorker(job: { peak: string[]; barrier: Int32Array; cores: number }) {
  Atomics.add(job.barrier, 0, 1);
  while (Atomics.load(job.barrier, 0) < job.cores) Atomics.wait(job.barrier, 0, Atomics.load(job.barrier, 0), 5);
  parentPort!.postMessage(kernelPeaks(job.peak, 10));
}

/** A row of results.json for one shape. */
type Row = Record<string, any>;

function runChild(job: ChildJob) {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(job)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

function runRegistry(job: RegistryJob) {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--registry', JSON.stringify(job)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

/** tiny, mini, small: interleaved strategies over many rounds, fisher against an epoch, one thread, then PyTorch. */
function fullRow(shape: Shape, quick: boolean): Row {
  const s = SHAPES[shape];
  const ours = runChild({
    shape,
    threads: 0,
    steps: quick ? 3 : s.steps,
    warmup: 2,
    strategies: true,
    fisherExamples: quick ? 32 : 128,
  });
  // Steady steps, as the main row's: a process's first steps fault in pages and compile code (at bert-tiny the
  // second to sixth took twice a steady step, which made one thread look more than twice as slow as two).
  const oneThread = runChild({
    shape,
    threads: 1,
    steps: quick ? 2 : Math.min(15, s.steps),
    warmup: quick ? 1 : 3,
    strategies: false,
    fisherExamples: 0,
  });
  const torch = torchPeers(shape, ours.threads, quick ? 1 : 3, quick ? 3 : 12);
  const registry = shape === 'bert-tiny' ? runRegistry({ shape, steps: quick ? 4 : 40, warmup: 2 }) : null;
  return {
    ...ours,
    registry,
    step_ms_one_thread: oneThread.step_ms.vanilla,
    pytorch: torch,
    pytorch_rounds_ms: torch.available ? torch.rounds.map((r: Row) => r.step_ms_median) : [],
  };
}

/** base, large: our process and PyTorch's alternated `rounds` times, a few steps each. */
function pairedRow(shape: Shape, quick: boolean, checkpoint: string | undefined): Row {
  const s = SHAPES[shape];
  const steps = quick ? 1 : s.steps;
  const rounds = quick ? 1 : s.rounds;
  const ours: Row[] = [];
  const torch: Row[] = [];
  for (let round = 0; round < rounds; round++) {
    process.stderr.write(`bench: ${shape} round ${round + 1}/${rounds}\n`);
    ours.push(
      runChild({ shape, threads: 0, steps, warmup: 2, strategies: s.strategies, fisherExamples: 0, checkpoint }),
    );
    torch.push(torchPeer(shape, ours[0].threads, steps, 2));
  }
  const vanilla = ours.flatMap((o) => o.vanilla_ms as number[]);
  // Every process's per-round figures together: a median over all the rounds, as at the smaller shapes.
  const pooled = (k: keyof Samples) =>
    ours.some((o) => o.samples[k] === null) ? null : ours.flatMap((o) => o.samples[k] as number[]);
  const samples: Samples = {
    f_overhead: pooled('f_overhead'),
    d_overhead: pooled('d_overhead'),
    f_mask_cost: pooled('f_mask_cost'),
    d_mask_cost: pooled('d_mask_cost'),
  };
  return {
    ...ours[0],
    step_ms: Object.fromEntries(Object.keys(ours[0].step_ms).map((k) => [k, median(ours.map((o) => o.step_ms[k]))])),
    vanilla_ms: vanilla,
    ...figuresOf(samples),
    startup: ours.map((o) => o.startup),
    peak_rss_bytes: Math.max(...ours.map((o) => o.peak_rss_bytes)),
    step_ms_one_thread: null,
    pytorch: torch[0].available ? { ...torch[0], rounds: torch } : torch[0],
    pytorch_rounds_ms: torch.filter((t) => t.available).map((t) => t.step_ms_median),
  };
}

/** `npm run bench -- --shapes base,large` runs only those shapes (names with or without `bert-`); `--quick` cuts every count. */
function selectedShapes(): Shape[] {
  const at = process.argv.indexOf('--shapes');
  if (at < 0) return Object.keys(SHAPES) as Shape[];
  const wanted = (process.argv[at + 1] ?? '')
    .split(',')
    .filter(Boolean)
    .map((n) => (n.startsWith('bert-') ? n : `bert-${n}`));
  const unknown = wanted.filter((n) => !(n in SHAPES));
  if (unknown.length || !wanted.length) {
    process.stderr.write(
      `bench: --shapes takes a comma-separated list of ${Object.keys(SHAPES)
        .map((n) => n.slice(5))
        .join(', ')}${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}\n`,
    );
    process.exit(2);
  }
  return wanted as Shape[];
}

/** A BERT-large checkpoint with BERT's vocabulary, so the bench times start-up as a run does it. */
function largeCheckpoint(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-bench-'));
  const vocab = path.resolve(ROOT, '..', 'shared', 'fixtures', 'bert-tiny-random', 'vocab.txt');
  const s = SHAPES['bert-large'];
  execFileSync(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'childtune.js'),
      'model',
      'init',
      '--size',
      'large',
      '--out',
      path.join(dir, 'model'),
      ...(fs.existsSync(vocab) ? ['--vocab', vocab] : []),
    ],
    { stdio: 'pipe' },
  );
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'config.json'), 'utf8'));
  if (config.num_hidden_layers !== s.layers || config.hidden_size !== s.hidden)
    throw new Error('model init --size large does not match the bench shape');
  return path.join(dir, 'model');
}

/** One shape's step on the GPU (webgpu), in a process of its own: vanilla, F and D interleaved, and D's fisher pass. */
async function webgpuChild(job: { shape: Shape; steps: number; warmup: number }) {
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

type GpuRow = Awaited<ReturnType<typeof webgpuChild>>;

/**
 * The agreement check at a bench shape, for a machine with a GPU: vanilla, F and D for `steps` steps (dropout off)
 * on the CPU path and on the GPU from the same random model and batches; each side in a process of its own. Prints
 * the largest relative loss difference per strategy, whether F's masks were identical, and the largest weight difference.
 */
async function agreementSide(job: { shape: Shape; steps: number; backend: 'wasm' | 'webgpu' }) {
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

function webgpuAgreement(shape: Shape, steps: number) {
  const side = (backend: string) => {
    const r = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), '--agreement-side', JSON.stringify({ shape, steps, backend })],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 },
    );
    if (r.status !== 0) throw new Error(`bench: agreement on ${backend} failed (exit ${r.status})`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Awaited<ReturnType<typeof agreementSide>>;
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
function webgpuBench(shapes: Shape[], quick: boolean) {
  const rows: GpuRow[] = [];
  for (const shape of shapes) {
    process.stderr.write(`bench: webgpu ${shape}\n`);
    const job = { shape, steps: quick ? 1 : 5, warmup: 1 };
    const out = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--webgpu-child', JSON.stringify(job)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 26,
    });
    if (out.status !== 0) throw new Error(`bench: webgpu ${shape} failed (exit ${out.status})`);
    rows.push(JSON.parse(out.stdout.trim().split('\n').at(-1)!));
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

/** BERT-base in each matrix arithmetic against PyTorch's fp32 and bf16 autocast steps. */
function arithmeticMarkdown(a: ArithmeticRow | null, num: (x: number | null | undefined, d?: number) => string) {
  if (!a) return [];
  const rows = Object.entries(a.ours).map(([arithmetic, o]) => {
    const peer = arithmetic === 'bf16' ? a.pytorch_bf16_ms : a.pytorch_fp32_ms;
    return `| ${arithmetic} | ${o.kernel} | ${num(o.step_ms)} | ${num(a.ours.exact ? a.ours.exact.step_ms / o.step_ms : null, 2)} | ${num(peer)} | ${num(peer ? o.step_ms / peer : null, 2)} |`;
  });
  return [
    `## ${a.shape}: the step in each matrix arithmetic (vanilla, one process each, two warm-up steps)`,
    '',
    "PyTorch's peer is its fp32 step for exact and fma, and its step under `torch.autocast('cpu', torch.bfloat16)` for bf16 (median over processes, two warm-up steps each).",
    '',
    '| arithmetic | kernel | step ms | speed-up over exact | PyTorch ms | ratio vs PyTorch |',
    '|---|---|---|---|---|---|',
    ...rows,
    ...(a.pytorch_bf16_why ? ['', `PyTorch bf16 peer not run: ${a.pytorch_bf16_why}.`] : []),
    '',
  ];
}

/** One table per CPU model measured (bench/results.json's by_cpu), newest first. */
function perCpuMarkdown(
  byCpu: Record<string, Row>,
  num: (x: number | null | undefined, d?: number) => string,
  pct: (x: number | null) => string,
) {
  const entries = Object.entries(byCpu).sort((a, b) => b[1].date.localeCompare(a[1].date));
  if (!entries.length) return [];
  return [
    '## Per CPU model',
    '',
    "The main rows of each CPU this bench has run on, as last measured there (`npm run bench` keeps the other CPUs' tables).",
    ...entries.flatMap(([cpu, c]) => [
      '',
      `### ${cpu}, ${c.date}: fp32 peak ${num(c.peak_gflops, 1)} GFLOP/s${c.bf16_peak_gflops ? `, bf16 ${num(c.bf16_peak_gflops, 1)}` : ''}${c.peak_note ? ` (${c.peak_note})` : ''}`,
      '',
      '| config | kernels | step ms | GFLOP/s | share of peak | PyTorch ms | ratio vs PyTorch | F overhead | D overhead |',
      '|---|---|---|---|---|---|---|---|---|',
      ...c.rows.map(
        (x: Row) =>
          `| ${x.config} | ${(x.kernels ?? 'wasm').replace(/ matrix kernels.*/, '')} | ${num(x.step_ms)} | ${num(x.gflops, 1)} | ${pct(x.peak_share ?? null)} | ${num(x.pytorch_ms)} | ${num(x.ratio_vs_pytorch, 2)} | ${pct(x.f_overhead ?? null)} | ${pct(x.d_overhead ?? null)} |`,
      ),
      ...(c.arithmetic
        ? [
            '',
            `BERT-base by arithmetic: ${Object.entries(
              c.arithmetic.ours as Record<string, { kernel: string; step_ms: number }>,
            )
              .map(([a, o]) => `${a} ${num(o.step_ms)} ms`)
              .join(
                ', ',
              )}; PyTorch fp32 ${num(c.arithmetic.pytorch_fp32_ms)} ms, bf16 autocast ${num(c.arithmetic.pytorch_bf16_ms)} ms.`,
          ]
        : []),
    ]),
    '',
  ];
}

function gpuMarkdown(g: { date: string; rows: GpuRow[] }): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    '',
    '## GPU (webgpu)',
    '',
    `\`npm run bench -- --backend webgpu\` on ${g.date}: batch ${BATCH} x ${SEQ}, fp32, each step's loss and gradient norm read back; ` +
      'F and D against vanilla in the same process, interleaved. A software adapter (SwiftShader) only shows that the bench runs.',
    '',
    '| shape | device | vanilla ms | GFLOP/s | F ms | D ms | F overhead | D overhead | fisher batch ms |',
    '|---|---|---|---|---|---|---|---|---|',
    ...g.rows.map(
      (r) =>
        `| ${r.shape} | ${r.device ? deviceLabel(r.device) : 'n/a'} | ${r.step_ms.vanilla.toFixed(0)} | ${r.gflops.toFixed(1)} | ${r.step_ms['child-tuning-f'].toFixed(0)} | ${r.step_ms['child-tuning-d'].toFixed(0)} | ${pct(r.f_overhead)} | ${pct(r.d_overhead)} | ${r.fisher_batch_ms.toFixed(0)} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

/**
 * `npm run bench -- --bf16-parity`: the quickstart (189 steps of Child-Tuning-D on 1,000 SST-2 sentences, every step's loss logged) in fp32
 * and in bf16 over five seeds, each run through the CLI as a user runs it: per seed the loss curves' largest and
 * median relative difference per step and per epoch, and dev accuracy in each precision. Written to
 * bench/results.json's `bf16_parity` and BENCHMARKS.md; the CPU rows are kept as they are.
 */
function bf16Parity(seeds: number[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-bf16-parity-'));
  const runOnce = (seed: number, precision: string) => {
    process.stderr.write(`bench: quickstart seed ${seed} ${precision}\n`);
    const out = execFileSync(
      process.execPath,
      [
        path.join(ROOT, 'bin', 'childtune.js'),
        'run',
        path.join(ROOT, 'recipes', 'quickstart.yaml'),
        '--json',
        '--quiet',
        ...[
          'training.seed=' + seed,
          'training.precision=' + precision,
          'training.log_every=1',
          'runtime.kernels=exact',
        ].flatMap((x) => ['--set', x]),
        ...['runtime.output_dir=' + path.join(dir, 'runs'), 'runtime.cache_dir=' + path.join(dir, 'cache')].flatMap(
          (x) => ['--set', x],
        ),
        '--allow-path',
        dir,
      ],
      { encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 26 },
    );
    const run = JSON.parse(out)[0].dir as string;
    const lines = fs
      .readFileSync(path.join(run, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const steps = lines.filter((m) => 'loss' in m);
    const results = JSON.parse(fs.readFileSync(path.join(run, 'results.json'), 'utf8'));
    return {
      losses: steps.map((m) => m.loss as number),
      epochs: steps.map((m) => m.epoch as number),
      accuracy: results.metrics.accuracy as number,
      kernel: results.kernels?.kernel as string,
    };
  };
  const perSeed = seeds.map((seed) => {
    const [a, b] = [runOnce(seed, 'fp32'), runOnce(seed, 'bf16')];
    const rel = a.losses.map((l, i) => Math.abs(b.losses[i] - l) / Math.abs(l));
    const epochMean = (r: typeof a, e: number) => {
      const xs = r.losses.filter((_, i) => r.epochs[i] === e);
      return xs.reduce((x, y) => x + y, 0) / xs.length;
    };
    const epochs = [...new Set(a.epochs)];
    return {
      seed,
      steps: a.losses.length,
      kernels: { fp32: a.kernel, bf16: b.kernel },
      step_rel_diff_max: Math.max(...rel),
      step_rel_diff_median: median(rel),
      epoch_rel_diff: epochs.map((e) => Math.abs(epochMean(b, e) - epochMean(a, e)) / epochMean(a, e)),
      accuracy: { fp32: a.accuracy, bf16: b.accuracy },
    };
  });
  fs.rmSync(dir, { recursive: true, force: true });
  const resultsFile = path.join(ROOT, 'bench', 'results.json');
  const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
  results.bf16_parity = { date: new Date().toISOString().slice(0, 10), cpu: cpuKey(cpuOf()), seeds: perSeed };
  fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
  const benchmarks = path.join(ROOT, 'BENCHMARKS.md');
  fs.writeFileSync(benchmarks, markdown(results) + measuredByHand(benchmarks));
  process.stdout.write(bf16Markdown(results.bf16_parity).join('\n'));
}

function bf16Markdown(p: { date: string; cpu: string; seeds: Row[] } | undefined): string[] {
  if (!p) return [];
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
  const acc = (k: 'fp32' | 'bf16') => p.seeds.map((s) => s.accuracy[k] as number);
  return [
    '## bf16 against fp32 (the quickstart, five seeds)',
    '',
    `\`npm run bench -- --bf16-parity\` on ${p.date} (${p.cpu}): the quickstart recipe (${p.seeds[0].steps} steps of Child-Tuning-D, 1,000 SST-2 sentences) per seed in fp32 (exact kernels) and in bf16 (\`training.precision: bf16\`), each a CLI run. Loss differences are relative to fp32's loss at the same step, and per epoch to its mean loss.`,
    '',
    '| seed | step loss diff, median | step loss diff, max | epoch mean loss diff (each epoch) | dev accuracy fp32 | dev accuracy bf16 |',
    '|---|---|---|---|---|---|',
    ...p.seeds.map(
      (s) =>
        `| ${s.seed} | ${pct(s.step_rel_diff_median)} | ${pct(s.step_rel_diff_max)} | ${s.epoch_rel_diff.map(pct).join(', ')} | ${s.accuracy.fp32.toFixed(4)} | ${s.accuracy.bf16.toFixed(4)} |`,
    ),
    '',
    `Dev accuracy over the seeds: fp32 ${mean(acc('fp32')).toFixed(4)} ± ${sd(acc('fp32')).toFixed(4)}, bf16 ${mean(acc('bf16')).toFixed(4)} ± ${sd(acc('bf16')).toFixed(4)} (mean ± sd).`,
    '',
  ];
}

async function main() {
  if (process.argv.includes('--bf16-parity')) return bf16Parity([1, 2, 3, 4, 5]);
  if (process.argv[2] === '--agreement-side') {
    process.stdout.write(JSON.stringify(await agreementSide(JSON.parse(process.argv[3]))) + '\n');
    return;
  }
  if (process.argv[2] === '--webgpu-child') {
    process.stdout.write(JSON.stringify(await webgpuChild(JSON.parse(process.argv[3]))) + '\n');
    return;
  }
  if (process.argv[2] === '--child') {
    process.stdout.write(JSON.stringify(await child(JSON.parse(process.argv[3]))) + '\n');
    return;
  }
  if (process.argv[2] === '--registry') {
    process.stdout.write(JSON.stringify(await registryChild(JSON.parse(process.argv[3]))) + '\n');
    return;
  }
  if (process.argv[2] === '--kernels') {
    process.stdout.write(JSON.stringify(await kernelRates()) + '\n');
    return;
  }
  const quick = process.argv.includes('--quick');
  const shapes = selectedShapes();
  const backendAt = process.argv.indexOf('--backend');
  if (backendAt >= 0) {
    if (process.argv[backendAt + 1] !== 'webgpu') {
      process.stderr.write('bench: --backend takes webgpu (the CPU rows are what a plain npm run bench measures)\n');
      process.exit(2);
    }
    // --agreement: the CPU path against the GPU at each shape (2 steps), printed, not written to the results.
    if (process.argv.includes('--agreement')) return shapes.forEach((shape) => webgpuAgreement(shape, 2));
    return webgpuBench(shapes, quick);
  }
  const peak = await measuredPeak();
  const resultsFile = path.join(ROOT, 'bench', 'results.json');
  // A partial run (--shapes) replaces its rows and keeps the others from the last results.
  const previous = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : undefined;
  // Rows measured on another CPU are not this machine's: only this CPU's are kept (the others live on in by_cpu).
  const sameCpu = previous?.peak?.cpu && cpuKey(previous.peak.cpu) === cpuKey(peak.cpu);
  // A kept row's share of peak is taken against this run's peak, the one the table's header states.
  const rows = new Map<string, Row>(
    (sameCpu ? previous.configs : []).map((c: Row) => [
      c.config,
      { ...c, peak_share: peak.gflops && c.gflops ? c.gflops / peak.gflops : c.peak_share },
    ]),
  );
  for (const shape of shapes) {
    process.stderr.write(`bench: ${shape}\n`);
    const s = SHAPES[shape];
    let checkpoint: string | undefined;
    if (shape === 'bert-large') checkpoint = largeCheckpoint();
    try {
      const r = s.mode === 'full' ? fullRow(shape, quick) : pairedRow(shape, quick, checkpoint);
      const vanillaMs = r.step_ms.vanilla;
      const torchMs = r.pytorch_rounds_ms.length ? median(r.pytorch_rounds_ms) : null;
      const gflops = stepFlops(s) / vanillaMs / 1e6;
      rows.set(shape, {
        config: shape,
        layers: s.layers,
        hidden: s.hidden,
        heads: s.heads,
        seq: SEQ,
        batch: BATCH,
        mode: s.mode,
        backend: r.backend,
        kernels: r.kernels,
        threads: r.threads,
        params: r.params,
        step_ms_median: vanillaMs,
        step_ms_all: r.vanilla_ms,
        step_ms_one_thread: r.step_ms_one_thread,
        tokens_per_s: (BATCH * SEQ * 1000) / vanillaMs,
        gflops,
        peak_share: peak.gflops ? gflops / peak.gflops : null,
        f_overhead: r.overhead.f,
        d_overhead: r.overhead.d,
        f_mask_cost: r.mask_cost.f,
        d_mask_cost: r.mask_cost.d,
        intervals: Object.fromEntries(
          Object.entries(r.samples as Record<string, number[] | null>).map(([k, v]) => [
            k,
            v && v.length > 1 ? medianInterval(v) : null,
          ]),
        ),
        step_ms: r.step_ms,
        fisher_over_epoch: r.fisher ? r.fisher.fisher_ms / r.fisher.epoch_ms : null,
        fisher_ms: r.fisher?.fisher_ms ?? null,
        epoch_ms: r.fisher?.epoch_ms ?? null,
        startup: r.startup,
        peak_rss_bytes: r.peak_rss_bytes,
        estimate_bytes: r.estimate_bytes,
        rss_over_estimate: r.peak_rss_bytes / r.estimate_bytes,
        pytorch: r.pytorch,
        pytorch_step_ms_median: torchMs,
        ratio_vs_pytorch: torchMs ? vanillaMs / torchMs : null,
        ...(r.registry ? { strategies: r.registry } : {}),
      });
    } finally {
      if (checkpoint) fs.rmSync(path.dirname(checkpoint), { recursive: true, force: true });
    }
  }
  const base = rows.get('bert-base');
  const arithmetic = shapes.includes('bert-base')
    ? arithmeticRow('bert-base', quick, base?.pytorch_step_ms_median ?? null)
    : (previous?.arithmetic ?? null);
  const fullRun = shapes.length === Object.keys(SHAPES).length;
  process.stderr.write('bench: kernels\n');
  const kernels = JSON.parse(
    execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--kernels'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .at(-1)!,
  );
  if (fullRun || !previous) process.stderr.write('bench: selection, start-up\n');
  const date = new Date().toISOString();
  const configs = (Object.keys(SHAPES) as Shape[]).filter((n) => rows.has(n)).map((n) => rows.get(n)!);
  const results = {
    date,
    machine: {
      cpus: os.availableParallelism(),
      model: peak.cpu.model,
      memory_gib: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
    },
    peak,
    configs,
    arithmetic,
    // One summary per CPU model measured, kept across runs on other machines, so a regression on either shows.
    by_cpu: {
      ...(previous?.by_cpu ?? {}),
      [cpuKey(peak.cpu)]: {
        date: date.slice(0, 10),
        cpu: peak.cpu,
        peak_gflops: peak.gflops,
        bf16_peak_gflops: peak.bf16_gflops,
        rows: configs.map(summaryOf),
        arithmetic,
      },
    },
    kernels,
    selection: fullRun || !previous ? selectionScaling() : previous.selection,
    // The GPU rows come from `--backend webgpu` runs and the bf16 parity from `--bf16-parity`, kept through a CPU run.
    ...(previous?.webgpu && { webgpu: previous.webgpu }),
    ...(previous?.bf16_parity && { bf16_parity: previous.bf16_parity }),
    startup_ms:
      fullRun || !previous
        ? { validate: cliMs(['validate', 'recipes/quickstart.yaml']), plan: cliMs(['plan', 'recipes/quickstart.yaml']) }
        : previous.startup_ms,
  };
  fs.mkdirSync(path.join(ROOT, 'bench'), { recursive: true });
  fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
  const benchmarks = path.join(ROOT, 'BENCHMARKS.md');
  fs.writeFileSync(benchmarks, markdown(results) + measuredByHand(benchmarks));
  process.stdout.write(markdown(results));
}

/** "AMD EPYC (family 26)": the model name alone does not tell AMD's generations apart on these VMs. */
const cpuKey = (c: { model: string; family: number | null }) =>
  `${c.model}${c.family === null ? '' : ` (family ${c.family})`}`;

/** A configuration's figures as the per-CPU table keeps them. */
const summaryOf = (c: Row) => ({
  config: c.config,
  kernels: c.kernels,
  step_ms: c.step_ms_median,
  gflops: c.gflops,
  peak_share: c.peak_share,
  pytorch_ms: c.pytorch_step_ms_median,
  ratio_vs_pytorch: c.ratio_vs_pytorch,
  f_overhead: c.f_overhead,
  d_overhead: c.d_overhead,
});

/** BENCHMARKS.md's sections measured by hand (after HAND_MARKER), which a bench run keeps as they are. */
const HAND_MARKER = '<!-- Measured by hand, not by npm run bench: kept as is when the bench rewrites this file. -->';
function measuredByHand(file: string): string {
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const at = old.indexOf(HAND_MARKER);
  return at < 0 ? '' : '\n' + old.slice(at);
}

function markdown(r: {
  date: string;
  machine: { cpus: number; model: string; memory_gib: number; node: string };
  peak: Awaited<ReturnType<typeof measuredPeak>>;
  configs: Row[];
  kernels: Awaited<ReturnType<typeof kernelRates>>;
  selection: { elements: number; ms: number; ns_per_element: number }[];
  startup_ms: { validate: number; plan: number };
  arithmetic?: ArithmeticRow | null;
  by_cpu?: Record<string, Row>;
  bf16_parity?: { date: string; cpu: string; seeds: Row[] };
  webgpu?: { date: string; rows: GpuRow[] };
}) {
  const pct = (x: number | null) => (x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(1)}%`);
  // A median with its 95% bootstrap interval over the rounds, where the row has one (every shape that ran F and D).
  const pctIn = (x: number | null, interval?: [number, number] | null) =>
    interval ? `${pct(x)} [${(interval[0] * 100).toFixed(1)}, ${(interval[1] * 100).toFixed(1)}]` : pct(x);
  const num = (x: number | null | undefined, digits = 0) => (x === null || x === undefined ? 'n/a' : x.toFixed(digits));
  const blocks = nativeBlocks();
  // Without the addon (no native kernels here) the sentence names no sizes rather than zeros.
  const blockSizes = blocks ? ` of ${blocks.mc} x ${blocks.kc} (A) and ${blocks.kc} x ${blocks.nc} (B)` : '';
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const large = r.configs.find((c) => c.config === 'bert-large');
  const startups: Row[] = large ? [large.startup].flat() : [];
  const lines = [
    '# Benchmarks',
    '',
    `Produced by \`npm run bench\` (bench/bench.ts) on ${r.date.slice(0, 10)}: ${r.machine.cpus} cores (${r.machine.model}), ${r.machine.memory_gib} GiB, Node ${r.machine.node}. Raw numbers: bench/results.json.`,
    'One training step = forward, backward and AdamW on a batch of 16 sequences of 128 tokens, vocabulary 30522. Medians; strategies are interleaved step by step so machine drift hits all alike.',
    `CPU: ${r.peak.cpu?.model ?? r.machine.model}${r.peak.cpu ? ` (${r.peak.cpu.vendor}, family ${r.peak.cpu.family}; flags ${r.peak.cpu.flags.join(' ')})` : ''}.`,
    `Machine peak (fp32): ${num(r.peak.gflops, 1)} GFLOP/s, ${r.peak.how}${r.peak.bf16_gflops ? `; bf16 (avx512bf16): ${num(r.peak.bf16_gflops, 1)} GFLOP/s` : ''}.`,
    ...(r.peak.kernels
      ? [
          `Per kernel, one core / all ${r.peak.cores} cores at once (GFLOP/s): ${Object.entries(
            r.peak.kernels as Record<string, { one_core: number; all_cores: number }>,
          )
            .map(([k, v]) => `${k} ${num(v.one_core, 1)} / ${num(v.all_cores, 1)}`)
            .join('; ')}.`,
        ]
      : []),
    '',
    '| config | backend (matrix kernels) | threads | step ms (median) | 1 thread | tokens/s | GFLOP/s | share of peak | PyTorch ms | ratio vs PyTorch | F overhead | D overhead | F mask cost | D mask cost | fisher / epoch | peak RSS | plan estimate | RSS / estimate |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...r.configs.map(
      (c) =>
        `| ${c.config} (${c.layers}/${c.hidden}/${c.heads}) | ${c.backend} (${(c.kernels ?? 'wasm').replace(/ matrix kernels.*/, '')}) | ${c.threads} | ${num(c.step_ms_median)} | ${num(c.step_ms_one_thread)} | ${num(c.tokens_per_s)} | ${num(c.gflops, 1)} | ${pct(c.peak_share ?? null)} | ${num(c.pytorch_step_ms_median)} | ${num(c.ratio_vs_pytorch, 2)} | ${pctIn(c.f_overhead, c.intervals?.f_overhead)} | ${pctIn(c.d_overhead, c.intervals?.d_overhead)} | ${pctIn(c.f_mask_cost, c.intervals?.f_mask_cost)} | ${pctIn(c.d_mask_cost, c.intervals?.d_mask_cost)} | ${num(c.fisher_over_epoch, 2)} | ${mib(c.peak_rss_bytes)} | ${mib(c.estimate_bytes)} | ${num(c.rss_over_estimate, 2)} |`,
    ),
    '',
    ...r.configs
      .filter((c) => !c.pytorch.available)
      .map((c) => `PyTorch peer not run for ${c.config}: ${c.pytorch.why}.`),
    ...(startups.length
      ? [
          '',
          `BERT-large start-up (backend, weights ${startups[0].weights}, worker threads with their replicas): ${startups.map((s) => `${(s.total_ms / 1000).toFixed(1)} s (backend ${(s.backend_ms / 1000).toFixed(1)}, weights ${(s.weights_ms / 1000).toFixed(1)}, workers ${(s.workers_ms / 1000).toFixed(1)})`).join('; ')}.`,
        ]
      : []),
    ...r.configs
      .filter((c) => c.strategies)
      .flatMap((c) => [
        '',
        `## Every registered strategy against vanilla (${c.config}, ${c.strategies.threads} threads; default options)`,
        '',
        `Each kind on its own model (its modifiers applied) and pool, beside one vanilla pool kept for the whole run: two warm-up steps of each, then steps alternating between the kind and vanilla (each round starting with the other side). *Against vanilla* is the median of the per-round ratios, with its 95% bootstrap interval; vanilla's median step over all rounds: ${num(c.strategies.vanilla_ms)} ms.`,
        '',
        '| strategy | trainable share | step ms (median) | against vanilla |',
        '|---|---|---|---|',
        ...c.strategies.strategies.map(
          (s: Row) =>
            `| ${s.kind} | ${pct(s.trainable_share)} | ${num(s.step_ms)} | ${s.overhead >= 0 ? '+' : ''}${pctIn(s.overhead, s.overhead_interval)} |`,
        ),
      ]),
    '',
    `Threshold selection (quickselect): ${r.selection.map((s) => `${s.elements.toLocaleString('en-US')} elements in ${s.ms.toFixed(1)} ms (${s.ns_per_element.toFixed(1)} ns/element)`).join('; ')}.`,
    '',
    `Start-up (fresh process, median of 5): \`childtune validate\` ${r.startup_ms.validate.toFixed(0)} ms, \`childtune plan\` ${r.startup_ms.plan.toFixed(0)} ms.`,
    '',
    '## Reading the table',
    '',
    '- *GFLOP/s* counts the matrix products of forward and backward (3 × forward) over the step time, both threads together; *share of peak* divides it by the machine peak above.',
    `- tiny, mini and small: strategies interleaved over ${SHAPES['bert-tiny'].steps}, ${SHAPES['bert-mini'].steps} and ${SHAPES['bert-small'].steps} rounds, then PyTorch (three processes, 12 steps after 3 warm-up each). base and large: our process and PyTorch's alternate twice, each two warm-up steps and ${SHAPES['bert-base'].steps} (base, the three strategies interleaved; the overheads pool both processes' rounds) or ${SHAPES['bert-large'].steps} (large, vanilla only) measured steps per process; the ratio is our median step over the median of PyTorch's per-process medians. \`npm run bench -- --shapes base,large\` reruns only those rows (the others are kept from bench/results.json).`,
    "- *1 thread*: vanilla's step on one thread, in a process of its own (tiny, mini and small; the median of 15 steps after 3 warm-up steps).",
    "- *F/D overhead*: each round runs one step of each strategy back to back (rotating which goes first); the figure is the median over rounds of the strategy's step time over vanilla's in the same round, minus one. Steps vary by 10-20% on this VM (the per-round ratios' middle half spans about 20 points at bert-tiny), so the bracket gives the 95% bootstrap interval of the median over the rounds.",
    "- *F/D mask cost*: the masks act only in the update round, so this is the median over rounds of the strategy's update-round time minus vanilla's in the same round, over vanilla's median step (bracket: its 95% bootstrap interval): the same overhead without the forward and backward passes' noise.",
    '- *fisher / epoch*: the batch-estimator fisher pass over 128 examples against one training epoch over the same examples (each the median of three, alternated).',
    "- *plan estimate* is `childtune plan`'s memory model for a D run with this batch and thread count; *peak RSS* is the child process's.",
    '- The matrix products run in the native kernels where the machine has them (native/gemm.c: AVX-512 6 x 64 or AVX2 6 x 16',
    `  register tiles, packed panels, cache blocks${blockSizes}), in place on the wasm heap; elsewhere in`,
    '  our wasm SIMD kernel (src/engine/wasm/kernels.wat). The main rows run the kernels `runtime.kernels: auto` picks here: the',
    '  exact ones (every element the same k-ordered sum of separately rounded products, bit for bit the wasm kernel) unless',
    '  fused multiply-adds measure clearly faster (Intel server cores, where multiply, add and FMA share two ports). *share of',
    '  peak* is against the measured fp32 peak above (the fastest fp32 kernel in registers on every core at once).',
    '- PyTorch (Debian python3-torch, /usr/bin/python3) runs with the same thread count, OpenBLAS and OpenMP thread variables',
    '  unset, two warm-up steps per process at least (its first steps are slow); its figure is the median over processes. Its',
    "  matrix products go through Debian's libblas.so.3: the bench checks that it is OpenBLAS (libopenblas0-pthread), not the",
    '  reference BLAS Debian installs without it, which is tens of times slower.',
    '',
    ...arithmeticMarkdown(r.arithmetic ?? null, num),
    // Results written before every kernel had a column keep no table (the next full run writes it).
    ...(r.kernels.paths
      ? [
          `## Matrix products, one thread (GFLOP/s, median of five, every kernel alternated in one process; in brackets the share of that kernel's one-core peak)`,
          '',
          `| M x K x N | transposed | ${r.kernels.paths.join(' | ')} |`,
          `|---|---|${r.kernels.paths.map(() => '---|').join('')}`,
          ...r.kernels.rows.map(
            (k) =>
              `| ${k.shape} | ${k.transposed} | ${r.kernels.paths
                .map((p) => {
                  const one = r.peak.kernels?.[p]?.one_core;
                  return `${num(k.gflops[p], 1)}${one ? ` (${pct(k.gflops[p] / one)})` : ''}`;
                })
                .join(' | ')} |`,
          ),
          '',
        ]
      : []),
    ...bf16Markdown(r.bf16_parity),
    ...perCpuMarkdown(r.by_cpu ?? {}, num, pct),
  ];
  return lines.join('\n') + (r.webgpu ? gpuMarkdown(r.webgpu) : '');
}

if (isMainThread) await main();
else peakWorker(workerData);
