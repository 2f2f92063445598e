/** BENCHMARKS.md: its sections from bench/results.json, and the sections measured by hand that a bench run keeps. */
import fs from 'node:fs';
import { nativeBlocks } from '../src/engine/native.js';
import { deviceLabel } from '../src/engine/webgpu/device.js';
import type { ArithmeticRow, kernelRates, measuredPeak } from './peak.js';
import { BATCH, type Row, SEQ, SHAPES } from './shapes.js';
import type { GpuRow } from './webgpu.js';

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
              )}; PyTorch fp32 ${num(c.arithmetic.pytorch_fp32_ms)} ms${c.arithmetic.pytorch_bf16_ms == null ? '' : `, bf16 autocast ${num(c.arithmetic.pytorch_bf16_ms)} ms`}.`,
          ]
        : []),
    ]),
    '',
  ];
}

export function gpuMarkdown(g: { date: string; rows: GpuRow[] }): string {
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

export function bf16Markdown(p: { date: string; cpu: string; seeds: Row[] } | undefined): string[] {
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

type Cpu = { model: string; family: number | null; model_number?: number | null; flags: string[] };

/** "AMD EPYC (family 25, model 1)": the model name alone does not tell AMD's generations apart on these VMs. */
export const cpuKey = (c: Cpu) =>
  `${c.model}${c.family === null ? '' : ` (family ${c.family}${c.model_number == null ? '' : `, model ${c.model_number}`})`}`;

/**
 * Tables recorded before the key had the model number ("AMD EPYC (family 25)") that this CPU replaces: same name,
 * family and flags. One of another generation (a Zen 4 table, when a Zen 3 of the same family runs) is kept.
 */
const supersededBy = (cpu: Cpu, recorded: Cpu) =>
  recorded.model_number === undefined &&
  recorded.model === cpu.model &&
  recorded.family === cpu.family &&
  recorded.flags.join(' ') === cpu.flags.join(' ');

/** results.json's by_cpu with this CPU's summary in place of its earlier one; other CPUs' tables kept. */
export const withCpuSummary = (byCpu: Record<string, Row>, cpu: Cpu, summary: Row): Record<string, Row> => ({
  ...Object.fromEntries(Object.entries(byCpu).filter(([, c]) => !supersededBy(cpu, c.cpu))),
  [cpuKey(cpu)]: { ...summary, cpu },
});

/** A configuration's figures as the per-CPU table keeps them. */
export const summaryOf = (c: Row) => ({
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
export function measuredByHand(file: string): string {
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const at = old.indexOf(HAND_MARKER);
  return at < 0 ? '' : '\n' + old.slice(at);
}

export function markdown(r: {
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
    `CPU: ${r.peak.cpu?.model ?? r.machine.model}${r.peak.cpu ? ` (${r.peak.cpu.vendor}, family ${r.peak.cpu.family}${r.peak.cpu.model_number == null ? '' : `, model ${r.peak.cpu.model_number}`}; flags ${r.peak.cpu.flags.join(' ')})` : ''}.`,
    `Machine peak (fp32): ${num(r.peak.gflops, 1)} GFLOP/s, ${r.peak.how}${r.peak.bf16_gflops ? `; bf16 (the fastest bf16 kernel): ${num(r.peak.bf16_gflops, 1)} GFLOP/s` : ''}.`,
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
    '  fused multiply-adds measure at least 1.1x as fast (Intel server cores, where multiply, add and FMA share two ports, and',
    '  AMD Zen 3). *share of peak* is against the measured fp32 peak above (the fastest fp32 kernel in registers on every core',
    '  at once).',
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
