import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { selectBackend } from '../src/engine/backend.js';
import { headContext, headScores, matMul } from '../src/engine/kernels.js';
import { nativeKernelNames, nativeKernels, selectKernel } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { GLUE, REPO, tinyModelRecipe } from './helpers.js';

/**
 * The native kernels compute what the wasm kernel computes (same k order, separate multiply and add), so
 * every product must match it bit for bit, for any shape, stride and kernel this CPU runs.
 */

const random = (n: number, seed: number) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
};

/** The bytes of what `product` returns, on the given kernels. */
function bytesOn(kernel: string, product: () => tf.Tensor): Buffer {
  selectKernel(kernel);
  const t = tf.tidy(product);
  const out = Buffer.from((t.dataSync() as Float32Array).buffer.slice(0));
  t.dispose();
  return out;
}

const native = nativeKernelNames();
const skip = native.length === 0 ? `no native kernels here: ${nativeKernels().why}` : false;

describe('native matrix kernels', { skip }, () => {
  before(async () => {
    await selectBackend('wasm');
  });
  after(() => selectKernel(undefined));

  test('an operand reaching outside the heap is an error, never a stray read or write', () => {
    const heap = (tf.backend() as unknown as { wasm: { asm: { memory: WebAssembly.Memory } } }).wasm.asm.memory
      .buffer as ArrayBuffer;
    const gemm = nativeKernels().native!.gemm;
    // A 2 x 3 times 3 x 2 product whose A starts 12 bytes before the end of the heap.
    assert.throws(
      () => gemm(heap, heap.byteLength - 12, 3, 1, 0, 0, 0, 2, 1, 0, 0, 64, 2, 0, 0, 2, 3, 2, 1, 1),
      RangeError,
    );
    assert.throws(() => gemm(heap, 0, -3, 1, 0, 0, 0, 2, 1, 0, 0, 64, 2, 0, 0, 2, 3, 2, 1, 1), RangeError);
  });

  for (const kernel of native) {
    test(`${kernel}: matMul equals the wasm kernel bit for bit, for sizes and transposes off the register tile`, () => {
      const dim = fc.integer({ min: 1, max: 150 });
      fc.assert(
        fc.property(dim, dim, dim, fc.boolean(), fc.boolean(), fc.nat(1000), (M, K, N, ta, tb, seed) => {
          const a = random(M * K, seed);
          const b = random(K * N, seed + 1);
          const product = () =>
            matMul(tf.tensor2d(a, ta ? [K, M] : [M, K]), tf.tensor2d(b, tb ? [N, K] : [K, N]), ta, tb);
          assert.ok(
            bytesOn(kernel, product).equals(bytesOn('wasm', product)),
            `${M}x${K}x${N} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`,
          );
        }),
        { numRuns: 60 },
      );
    });

    test(`${kernel}: products past every cache block (K over two blocks, M and N over one) equal the wasm kernel`, () => {
      const [M, K, N] = [197, 800, 3100];
      const a = random(M * K, 3);
      const b = random(K * N, 4);
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
      ]) {
        const product = () =>
          matMul(tf.tensor2d(a, ta ? [K, M] : [M, K]), tf.tensor2d(b, tb ? [N, K] : [K, N]), ta, tb);
        assert.ok(bytesOn(kernel, product).equals(bytesOn('wasm', product)), `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
      }
    });

    test(`${kernel}: head products inside [tokens, hidden] activations equal the wasm kernel`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 20 }),
          fc.nat(1000),
          (B, T, A, D, seed) => {
            const h = { B, T, A, D };
            const [x, y, p] = [
              random(B * T * A * D, seed),
              random(B * T * A * D, seed + 1),
              random(B * A * T * T, seed + 2),
            ];
            const inputs = () =>
              [tf.tensor2d(x, [B * T, A * D]), tf.tensor2d(y, [B * T, A * D]), tf.tensor4d(p, [B, A, T, T])] as const;
            const products: [string, () => tf.Tensor][] = [
              ['scores', () => headScores(inputs()[0], inputs()[1], h)],
              ['context', () => headContext(inputs()[2], inputs()[1], h)],
              ['transposed context', () => headContext(inputs()[2], inputs()[1], h, true)],
            ];
            for (const [what, product] of products)
              assert.ok(bytesOn(kernel, product).equals(bytesOn('wasm', product)), `${what} ${JSON.stringify(h)}`);
          },
        ),
        { numRuns: 30 },
      );
    });
  }
});

test(
  'CHILDTUNE_NATIVE=0 runs the wasm kernels, says so in the log, and trains to the same bits as the native kernels',
  { skip },
  async () => {
    const recipe = await tinyModelRecipe(`dataset:
  task: glue/rte
  dir: ${path.dirname(GLUE)}/glue/RTE
  eval_split: train
  subsample: {size: 32, seed: 0}
strategy: {kind: child-tuning-f, reserve_p: 0.5}
training: {epochs: 1, batch_size: 8, log_every: 1}
evaluation: {batch_size: 32}
runtime: {backend: wasm, threads: 2}
`);
    const run = (env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        [path.join(REPO, 'bin', 'childtune.js'), 'run', recipe, '--json', '--allow-path', path.dirname(GLUE)],
        { env: { ...process.env, ...env }, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const dir = JSON.parse(r.stdout)[0].dir as string;
      const losses = fs
        .readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((m) => 'loss' in m)
        .map((m) => m.loss);
      return { losses, weights: fs.readFileSync(path.join(dir, 'model', 'model.safetensors')), log: r.stderr };
    };
    const fallback = run({ CHILDTUNE_NATIVE: '0' });
    const fast = run({});
    assert.match(fallback.log, /matrix products: wasm matrix kernels \(CHILDTUNE_NATIVE=0\)/);
    assert.match(fast.log, /matrix products: native \w+ matrix kernels/);
    assert.ok(fallback.losses.length >= 4);
    assert.deepEqual(fast.losses, fallback.losses);
    assert.ok(fast.weights.equals(fallback.weights), 'the trained weights differ between the kernels');
  },
);
