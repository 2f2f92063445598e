import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { nativeKernelNames, nativeKernels } from '../src/engine/native.js';
import { GLUE, REPO, tinyModelRecipe } from './helpers.js';

/**
 * The amx-bf16 kernel on CPUs without AMX: the addon built with AMX's tile instructions emulated in C after Intel's
 * pseudocode (test/native/amx-emulation.h), loaded in place of the real one through CHILDTUNE_NATIVE_ADDON. Its
 * packing, tile walk, block edges and k padding then run here, and native.test.ts's bf16 tests hold every element to
 * float32 summation's error bound around the bfloat16-rounded operands' dot product, and exactly where every sum is
 * exact (a misplaced pair shows there). On an AMX CPU the real tiles run those tests themselves.
 */

const skip = nativeKernelNames().length === 0 ? `no native kernels here: ${nativeKernels().why}` : false;

describe('the AMX kernel on emulated tiles', { skip }, () => {
  let addon = '';
  before(() => {
    addon = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'amx-')), 'amx-emulated.node');
    const build = [path.join(REPO, 'scripts', 'build-native.mjs'), '--amx-emulation', addon];
    const built = spawnSync(process.execPath, build, { encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
  });

  /** node --test over one test file with the emulated addon; the TAP summary's counts. */
  const runTests = (file: string, pattern: string) => {
    // Without the runner's own context variable, which would make the inner run skip its files.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const r = spawnSync(
      process.execPath,
      ['--test', '--test-reporter=tap', `--test-name-pattern=${pattern}`, path.join(REPO, 'dist', 'test', file)],
      { env: { ...env, CHILDTUNE_NATIVE_ADDON: addon }, encoding: 'utf8' },
    );
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(r.stdout)?.[1]);
    return { status: r.status, out: r.stdout + r.stderr, pass: count('pass'), fail: count('fail') };
  };

  test("native.test.ts's tests of a bf16 kernel pass on amx-bf16: every element, past every cache block, bf16 rounding on every packing path, head products; and bf16 picks it first", () => {
    const r = runTests('native.test.js', 'amx-bf16|runtime.kernels chooses');
    assert.equal(r.status, 0, r.out);
    // The four amx-bf16 tests and the choice's, none skipped for want of the kernel.
    assert.equal(r.pass, 5, r.out);
    assert.equal(r.fail, 0, r.out);
  });

  test('a bf16 plan names the AMX kernel and its tiles; an addon named but missing is refused as such', async () => {
    const recipe = await tinyModelRecipe(`dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
strategy: {kind: child-tuning-d, reserve_p: 0.3}
training: {epochs: 1, batch_size: 8, precision: bf16}
runtime: {backend: wasm, threads: 2}
`);
    const plan = (file: string) =>
      spawnSync(
        process.execPath,
        [path.join(REPO, 'bin', 'childtune.js'), 'plan', recipe, '--allow-path', path.dirname(GLUE)],
        { env: { ...process.env, CHILDTUNE_NATIVE_ADDON: file }, encoding: 'utf8' },
      );
    const r = plan(addon);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /matrix kernels: amx-bf16 \(training.precision: bf16 \(AMX tiles, float32 sums\)\)/);
    const missing = plan(`${addon}.missing`);
    assert.equal(missing.status, 1, missing.stdout);
    assert.match(
      missing.stderr,
      /CT0340[\s\S]*CHILDTUNE_NATIVE_ADDON names \S+amx-emulated.node.missing, which does not exist/,
    );
  });
});
