/** `--bf16-parity`: the quickstart in fp32 and in bf16 over five seeds, through the CLI. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bf16Markdown, cpuKey, markdown, measuredByHand } from './markdown.js';
import { cpuOf } from './peak.js';
import { median, ROOT } from './shapes.js';

/**
 * `npm run bench -- --bf16-parity`: the quickstart (189 steps of Child-Tuning-D on 1,000 SST-2 sentences, every step's loss logged) in fp32
 * and in bf16 over five seeds, each run through the CLI as a user runs it: per seed the loss curves' largest and
 * median relative difference per step and per epoch, and dev accuracy in each precision. Written to
 * bench/results.json's `bf16_parity` and BENCHMARKS.md; the CPU rows are kept as they are.
 */
export function bf16Parity(seeds: number[]) {
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
