import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { arithmeticOf, nativeKernelNames } from '../src/engine/native.js';
import { cli, GLUE, REPO, runUntilKilled, tinyModelRecipe } from './helpers.js';
import { lossesOf, modelBytes } from './strategy-checks.js';

/**
 * What runtime.kernels and training.precision promise of whole runs: each kernel reruns bit for bit, fused and
 * bf16 products stay within tolerance of the exact ones with the same F masks, the choice is planned, logged and
 * recorded, a resume whose machine runs other kernels says so and continues, and what a CPU lacks is refused.
 */
const native = nativeKernelNames();
const fused = native.find((k) => arithmeticOf(k) === 'fma');
const bf16 = native.find((k) => arithmeticOf(k) === 'bf16');

const body = (runtime: string, training = '') => `dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: 40, seed: 0}
strategy: {kind: child-tuning-f, reserve_p: 0.5, f_masks: {record: true}}
training: {epochs: 1, batch_size: 8, log_every: 1, dropout: false, checkpoint_every: 1${training}}
evaluation: {batch_size: 40}
runtime: {backend: wasm, threads: 2, ${runtime}}
`;

interface Ran {
  dir: string;
  log: string;
  losses: number[];
  results: Record<string, any>;
  weights: Buffer;
  masks: Buffer;
}

async function runRecipe(recipe: string, args: string[] = []): Promise<Ran> {
  const r = await cli(['run', recipe, '--json', '--allow-path', path.dirname(GLUE), ...args]);
  assert.equal(r.code, 0, r.err);
  return read(JSON.parse(r.out)[0].dir as string, r.err);
}

function read(dir: string, log: string): Ran {
  return {
    dir,
    log,
    losses: lossesOf(dir),
    results: JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')),
    weights: modelBytes(dir),
    masks: fs.readFileSync(path.join(dir, 'f-masks.bin')),
  };
}

/** Runs shared by the tests (each tiny run costs seconds): made on first use. */
const memo = <T>(make: () => Promise<T>) => {
  let p: Promise<T> | undefined;
  return () => (p ??= make());
};
const exactRun = memo(async () => runRecipe(await tinyModelRecipe(body('kernels: exact'))));
const fmaRecipe = memo(() => tinyModelRecipe(body('kernels: fma')));
const fmaRun = memo(async () => runRecipe(await fmaRecipe()));

const within = (a: number[], b: number[], rel: number) =>
  a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= rel * Math.abs(b[i]));

test(
  'runtime.kernels fma: planned, logged and recorded; reruns bit for bit; within 1e-4 of the exact kernels with the same F masks',
  { skip: !fused && 'no fused kernels on this CPU' },
  async () => {
    const plan = await cli(['plan', await fmaRecipe(), '--allow-path', path.dirname(GLUE)]);
    assert.equal(plan.code, 0, plan.err);
    assert.match(plan.out, new RegExp(`matrix kernels: ${fused} \\(runtime.kernels: fma\\)`));
    const exact = await exactRun();
    const [a, b] = [await fmaRun(), await runRecipe(await fmaRecipe())];
    assert.match(a.log, new RegExp(`matrix products: native ${fused} matrix kernels`));
    assert.deepEqual(a.results.kernels, { kernel: fused, arithmetic: 'fma', why: 'runtime.kernels: fma' });
    assert.equal(exact.results.kernels.arithmetic, 'exact');
    assert.ok(a.weights.equals(b.weights) && a.losses.every((l, i) => l === b.losses[i]), 'an fma rerun differs');
    assert.ok(a.losses.length >= 5);
    assert.ok(within(a.losses, exact.losses, 1e-4), `${a.losses} against ${exact.losses}`);
    assert.notDeepEqual(a.losses, exact.losses, 'fused products are expected to round differently somewhere');
    // F's masks are drawn from the seed, never from arithmetic: the same on every kernel.
    assert.ok(a.masks.equals(exact.masks), 'the F masks depend on the kernels');
    // The report's "ran on" keeps fused runs apart from exact ones.
    const report = await cli(['report', exact.dir, a.dir, '--out', path.join(path.dirname(a.dir), 'report')]);
    assert.equal(report.code, 0, report.err);
    const ranOn = JSON.parse(fs.readFileSync(path.join(path.dirname(a.dir), 'report', 'report.json'), 'utf8')).ran_on;
    assert.deepEqual(ranOn, { 'wasm, 2 threads': 1, 'wasm, 2 threads, fma products': 1 });
  },
);

test(
  'a run resumed on a machine whose kernels differ says so, continues, and records the kernel it resumed from',
  { skip: !fused && 'no fused kernels on this CPU' },
  async () => {
    const recipe = await tinyModelRecipe(body('kernels: fma'));
    const runDir = await runUntilKilled(recipe, 2, ['--allow-path', path.dirname(GLUE)]);
    // The other machine: exact kernels only (its recipe asks for them, as a CPU without fused kernels would run).
    fs.writeFileSync(recipe, fs.readFileSync(recipe, 'utf8').replace('kernels: fma', 'kernels: exact'));
    const again = await cli(['run', '--resume', runDir]);
    assert.equal(again.code, 0, again.err);
    assert.match(
      again.err,
      new RegExp(
        `the checkpoint trained with ${fused} matrix kernels \\(fma\\), this machine runs \\w+ \\(exact\\): from step \\d+ on the results agree with an uninterrupted run within float rounding, not bit for bit`,
      ),
    );
    const resumed = read(runDir, again.err);
    assert.equal(resumed.results.kernels.arithmetic, 'exact');
    assert.equal(resumed.results.kernels.resumed_from, fused);
    const uninterrupted = await fmaRun();
    assert.ok(within(resumed.losses, uninterrupted.losses, 1e-4), `${resumed.losses} against ${uninterrupted.losses}`);
  },
);

test(
  'training.precision bf16: planned and recorded, reruns bit for bit, losses within 1% of fp32 with the same F masks',
  { skip: !bf16 && 'this CPU has no AVX512_BF16' },
  async () => {
    const fp32 = await exactRun();
    const recipe = await tinyModelRecipe(body('kernels: auto', ', precision: bf16'));
    const plan = await cli(['plan', recipe, '--allow-path', path.dirname(GLUE)]);
    assert.match(plan.out, new RegExp(`matrix kernels: ${bf16} \\(training.precision: bf16`));
    const [a, b] = [await runRecipe(recipe), await runRecipe(recipe)];
    assert.equal(a.results.kernels.arithmetic, 'bf16');
    assert.ok(a.weights.equals(b.weights), 'a bf16 rerun differs');
    assert.ok(within(a.losses, fp32.losses, 0.01), `${a.losses} against ${fp32.losses}`);
    assert.ok(!within(a.losses, fp32.losses, 1e-6), 'bf16 products are expected to differ from fp32 ones');
    assert.ok(a.masks.equals(fp32.masks), 'the F masks depend on the precision');
  },
);

test('what the CPU or backend lacks is refused by validate with CT0340, never emulated', async () => {
  const recipe = await tinyModelRecipe(body('kernels: auto', ', precision: bf16'));
  const onGpu = await cli(['validate', recipe, '--allow-path', path.dirname(GLUE), '--set', 'runtime.backend=cpu']);
  assert.equal(onGpu.code, 1);
  assert.match(
    onGpu.err,
    /CT0340[\s\S]*training.precision: bf16 runs on the CPU's native kernels, not on runtime.backend cpu/,
  );
  const off = spawnValidate(recipe, { CHILDTUNE_NATIVE: '0' });
  assert.match(off, /CT0340[\s\S]*bf16 needs a CPU with AVX512_BF16[\s\S]*never emulated/);
  const fmaOff = spawnValidate(recipe, { CHILDTUNE_NATIVE: '0' }, [
    '--set',
    'training.precision=fp32',
    '--set',
    'runtime.kernels=fma',
  ]);
  assert.match(fmaOff, /CT0340[\s\S]*runtime.kernels: fma needs the native FMA kernels/);
});

/** `childtune validate` in a process of its own (CHILDTUNE_NATIVE is read once per process); its errors. */
function spawnValidate(recipe: string, env: Record<string, string>, args: string[] = []): string {
  const r = spawnSync(
    process.execPath,
    [path.join(REPO, 'bin', 'childtune.js'), 'validate', recipe, '--allow-path', path.dirname(GLUE), ...args],
    { env: { ...process.env, ...env }, encoding: 'utf8' },
  );
  assert.equal(r.status, 1, r.stderr);
  return r.stderr;
}
