/**
 * `npm run bench`: the performance suite behind BENCHMARKS.md. Every figure comes from the product's own code
 * paths (DataParallel, accumulateFisher, selectChild, the CLI), each configuration in a fresh child process so
 * its peak RSS is its own. Writes bench/results.json and BENCHMARKS.md; compares with PyTorch on the same
 * machine when /usr/bin/python3 can import torch.
 */
import { execFileSync } from 'node:child_process';
import { isMainThread, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EncoderClassifier } from '../src/engine/model.js';
import { Rng } from '../src/engine/rng.js';
import { selectChild } from '../src/strategies/fisher.js';
import { bf16Parity } from './bf16-parity.js';
import { child, figuresOf, runChild, type Samples } from './cpu-step.js';
import { cpuKey, markdown, measuredByHand, summaryOf, withCpuSummary } from './markdown.js';
import { arithmeticRow, higherPeak, kernelRates, measuredPeak, peakWorker } from './peak.js';
import { registryChild, runRegistry } from './registry.js';
import {
  BATCH,
  median,
  medianInterval,
  ROOT,
  type Row,
  runMode,
  SEQ,
  type Shape,
  SHAPES,
  stepFlops,
} from './shapes.js';
import { torchPeer, torchPeers } from './torch-peer.js';
import { agreementSide, webgpuAgreement, webgpuBench, webgpuChild } from './webgpu.js';

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

/** The modes runMode starts this entry in: each takes its job (JSON, where it has one) and prints one JSON line. */
const MODES: Record<string, (job: any) => unknown> = {
  '--child': child,
  '--registry': registryChild,
  '--kernels': kernelRates,
  '--webgpu-child': webgpuChild,
  '--agreement-side': agreementSide,
};

async function main() {
  if (process.argv.includes('--bf16-parity')) return bf16Parity([1, 2, 3, 4, 5]);
  const mode = MODES[process.argv[2]];
  if (mode) {
    const job = process.argv[3] === undefined ? undefined : JSON.parse(process.argv[3]);
    process.stdout.write(JSON.stringify(await mode(job)) + '\n');
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
  const first = await measuredPeak();
  const resultsFile = path.join(ROOT, 'bench', 'results.json');
  // A partial run (--shapes) replaces its rows and keeps the others from the last results.
  const previous = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : undefined;
  // Rows measured on another CPU are not this machine's: only this CPU's are kept (the others live on in by_cpu).
  const sameCpu = previous?.peak?.cpu && cpuKey(previous.peak.cpu) === cpuKey(first.cpu);
  const rows = new Map<string, Row>((sameCpu ? previous.configs : []).map((c: Row) => [c.config, c]));
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
  const kernels = runMode<Awaited<ReturnType<typeof kernelRates>>>('--kernels', 'kernels');
  const peak = higherPeak(first, await measuredPeak());
  if (fullRun || !previous) process.stderr.write('bench: selection, start-up\n');
  const date = new Date().toISOString();
  // Every row's share of peak, kept rows' too, is taken against this run's peak, the one the table's header states.
  const configs = (Object.keys(SHAPES) as Shape[])
    .filter((n) => rows.has(n))
    .map((n) => rows.get(n)!)
    .map((c) => ({ ...c, peak_share: peak.gflops && c.gflops ? c.gflops / peak.gflops : (c.peak_share ?? null) }));
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
    by_cpu: withCpuSummary(previous?.by_cpu ?? {}, peak.cpu, {
      date: date.slice(0, 10),
      peak_gflops: peak.gflops,
      bf16_peak_gflops: peak.bf16_gflops,
      rows: configs.map(summaryOf),
      arithmetic,
    }),
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

if (isMainThread) await main();
else peakWorker(workerData);
