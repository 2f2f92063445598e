/** The machine's kernels: its CPU, its measured peak (and the peak workers), product rates, BERT-base by arithmetic. */
import fs from 'node:fs';
import os from 'node:os';
import { parentPort, Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/engine/backend.js';
import { matMul } from '../src/engine/kernels.js';
import { arithmeticOf, kernelPeaks, nativeKernelNames, selectKernel } from '../src/engine/native.js';
import { threadsFor } from '../src/run/parallel.js';
import { runChild } from './cpu-step.js';
import { ENTRY, median, type Shape, SHAPES } from './shapes.js';
import { torchPeers } from './torch-peer.js';

/**
 * One thread's matrix-product rate on the products of a BERT-base and -large layer (8 sequences of 128 tokens),
 * plain and with either operand transposed as the backward pass has them, every native kernel and the wasm kernel
 * alternated in one process; medians of five.
 */
export async function kernelRates() {
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
export interface ArithmeticRow {
  shape: Shape;
  ours: Record<string, { kernel: string; step_ms: number }>;
  pytorch_fp32_ms: number | null;
  pytorch_bf16_ms: number | null;
  pytorch_bf16_why?: string;
}

export function arithmeticRow(shape: Shape, quick: boolean, torchFp32: number | null): ArithmeticRow {
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
export function cpuOf() {
  const info = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = /^flags\s*:(.*)$/m.exec(info)?.[1].trim().split(/\s+/) ?? [];
  const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
  const modelNumber = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
  return {
    model: /^model name\s*:\s*(.*)$/m.exec(info)?.[1].trim() ?? os.cpus()[0]?.model ?? 'unknown',
    vendor: /^vendor_id\s*:\s*(.*)$/m.exec(info)?.[1].trim() ?? 'unknown',
    family: family === undefined ? null : Number(family),
    // Family 25 is both Zen 3 (AVX2) and Zen 4 (AVX-512): the model number tells them apart.
    model_number: modelNumber === undefined ? null : Number(modelNumber),
    flags: ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile', 'amx_bf16'].filter((f) => flags.includes(f)),
  };
}

/**
 * The machine's measured peak: each native kernel's register-only multiply-add rate (native/gemm.c js_peak, in
 * thread CPU time), on one core, and on every core at once (one worker thread each, started together behind a
 * barrier). The fp32 peak is the fastest fp32 kernel's; a share of it above 100% would be a bug in the bench.
 */
export async function measuredPeak() {
  const kernels = nativeKernelNames();
  const cores = os.availableParallelism();
  const one = kernels.length ? kernelPeaks(kernels, 5) : [];
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const all = await Promise.all(
    Array.from(
      { length: kernels.length ? cores : 0 },
      () =>
        new Promise<number[]>((resolve, reject) => {
          const w = new Worker(ENTRY, { workerData: { peak: kernels, barrier, cores } });
          w.once('message', resolve).once('error', reject);
        }),
    ),
  );
  const by = Object.fromEntries(
    kernels.map((k, j) => [k, { one_core: one[j], all_cores: all.reduce((sum, w) => sum + w[j], 0) }]),
  );
  /** The fastest all-core rate over the bf16 kernels, or over the fp32 ones. */
  const fastest = (bf16: boolean) =>
    Math.max(0, ...kernels.filter((k) => (arithmeticOf(k) === 'bf16') === bf16).map((k) => by[k].all_cores)) || null;
  return {
    cpu: cpuOf(),
    cores,
    kernels: by,
    gflops: fastest(false),
    bf16_gflops: fastest(true),
    how: kernels.length
      ? `measured: each native kernel's multiply-add in registers (native/gemm.c), ${cores} threads at once; fp32 is the fastest of ${kernels.filter((k) => arithmeticOf(k) !== 'bf16').join(', ')}`
      : 'not measured: no native kernels on this machine',
  };
}

export type Peak = Awaited<ReturnType<typeof measuredPeak>>;

/**
 * The higher of two measurements of the peak, per kernel and per figure: the bench measures at its start and at its
 * end, because a slow spell of a shared machine lowers one (a Zen 3 VM gave 163 GFLOP/s on two cores in one run, 190
 * in another), and a peak measured low would overstate every share of it.
 */
export function higherPeak(a: Peak, b: Peak): Peak {
  const kernels = Object.fromEntries(
    Object.entries(a.kernels).map(([k, x]) => {
      const y = b.kernels[k] ?? x;
      return [k, { one_core: Math.max(x.one_core, y.one_core), all_cores: Math.max(x.all_cores, y.all_cores) }];
    }),
  );
  const most = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  return {
    ...a,
    kernels,
    gflops: most(a.gflops, b.gflops),
    bf16_gflops: most(a.bf16_gflops, b.bf16_gflops),
    how: a.gflops ? `${a.how}; the higher of two measurements, at the start and the end of the run` : a.how,
  };
}

/** A peak worker: waits until every worker has started, then measures the kernels on its core. */
export function peakWorker(job: { peak: string[]; barrier: Int32Array; cores: number }) {
  Atomics.add(job.barrier, 0, 1);
  while (Atomics.load(job.barrier, 0) < job.cores) Atomics.wait(job.barrier, 0, Atomics.load(job.barrier, 0), 5);
  parentPort!.postMessage(kernelPeaks(job.peak, 10));
}
