/** The CPU step child (`--child`): a configuration's start-up, step times and fisher pass, in a process of its own. */
import { batchOf } from '../src/engine/batch.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import { selectBackend } from '../src/engine/backend.js';
import { parameterCounts } from '../src/engine/config.js';
import type { EncoderClassifier } from '../src/engine/model.js';
import { chooseKernels, nativeKernels, selectKernel } from '../src/engine/native.js';
import { clipCoefficient } from '../src/engine/optimizer.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { estimateMemory } from '../src/plan/estimate.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { DataParallel, threadsFor } from '../src/run/parallel.js';
import { childTuningD } from '../src/strategies/child-tuning-d/index.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import { accumulateFisher, selectChild } from '../src/strategies/fisher.js';
import type { Strategy } from '../src/strategies/strategy.js';
import { vanilla } from '../src/strategies/vanilla/index.js';
import { BATCH, median, modelFor, randomBatch, type Row, runMode, SEQ, type Shape, VOCAB } from './shapes.js';

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
export function productKernel(): string {
  const c = chooseKernels('auto', 'fp32');
  return 'kernel' in c ? c.kernel : 'wasm';
}

/** Per-round figures of F and D against vanilla (null where the strategies did not run). */
export interface Samples {
  f_overhead: number[] | null;
  d_overhead: number[] | null;
  f_mask_cost: number[] | null;
  d_mask_cost: number[] | null;
}

/** A row's overheads and mask costs: the medians of its per-round figures, which it keeps for their intervals. */
export function figuresOf(samples: Samples) {
  const of = (xs: number[] | null) => (xs ? median(xs) : null);
  return {
    overhead: { f: of(samples.f_overhead), d: of(samples.d_overhead) },
    mask_cost: { f: of(samples.f_mask_cost), d: of(samples.d_mask_cost) },
    samples,
  };
}

/** Vanilla, F at p = 0.3 and D with a random child network over the encoder: the strategies every row times. */
export function benchStrategies(model: EncoderClassifier, rng: Rng): Record<string, Strategy> {
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
export async function child(job: ChildJob) {
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

export function runChild(job: ChildJob): Row {
  return runMode('--child', `child ${job.shape}`, job);
}
