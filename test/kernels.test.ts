import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { selectBackend } from '../src/engine/backend.js';
import {
  columnSum,
  dropoutMask,
  gelu,
  headContext,
  headScores,
  layerNorm,
  layerNormBackward,
  matMul,
  type Heads,
} from '../src/engine/kernels.js';
import { Rng } from '../src/engine/rng.js';
import { wasmKernelsActive } from '../src/engine/wasm-kernels.js';

/** Element (i, j) of a row-major [rows, cols] array, or of its transpose. */
const at = (x: Float32Array, cols: number, i: number, j: number, transpose: boolean) =>
  transpose ? x[j * cols + i] : x[i * cols + j];
const random = (n: number, seed: number) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
};
const closeTo = (got: ArrayLike<number>, want: ArrayLike<number>, what: string) => {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    assert.ok(
      Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])),
      `${what}: element ${i} is ${got[i]}, want ${want[i]}`,
    );
};
const values = (t: tf.Tensor) => {
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
};

/** Per-head reference products over [B*T, A*D] activations, in doubles. */
function referenceHeads(h: Heads, x: Float32Array, y: Float32Array, p: Float32Array) {
  const { B, T, A, D } = h;
  const H = A * D;
  const scores = new Float64Array(B * A * T * T);
  const context = new Float64Array(B * T * H);
  const contextT = new Float64Array(B * T * H);
  for (let b = 0; b < B; b++) {
    for (let a = 0; a < A; a++) {
      const row = (t: number, d: number) => (b * T + t) * H + a * D + d;
      const score = (i: number, j: number) => ((b * A + a) * T + i) * T + j;
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < T; j++) for (let d = 0; d < D; d++) scores[score(i, j)] += x[row(i, d)] * y[row(j, d)];
        for (let d = 0; d < D; d++) {
          for (let j = 0; j < T; j++) {
            context[row(i, d)] += p[score(i, j)] * y[row(j, d)];
            contextT[row(i, d)] += p[score(j, i)] * y[row(j, d)];
          }
        }
      }
    }
  }
  return { scores, context, contextT };
}

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`product kernels on ${backend}`, () => {
    before(async () => {
      await selectBackend(backend);
      // wasm runs our strided kernels; cpu the tfjs fallback with explicit transposes.
      assert.equal(wasmKernelsActive(), backend === 'wasm');
    });

    test('matMul with either operand transposed equals a plain loop, for sizes off the 4 x 8 register block', () => {
      const dim = fc.integer({ min: 1, max: 21 });
      fc.assert(
        fc.property(dim, dim, dim, fc.boolean(), fc.boolean(), fc.nat(1000), (M, K, N, ta, tb, seed) => {
          const a = random(M * K, seed);
          const b = random(K * N, seed + 1);
          const want = new Float64Array(M * N);
          for (let i = 0; i < M; i++)
            for (let j = 0; j < N; j++)
              for (let k = 0; k < K; k++) want[i * N + j] += at(a, ta ? M : K, i, k, ta) * at(b, tb ? K : N, k, j, tb);
          const got = tf.tidy(() =>
            matMul(tf.tensor2d(a, ta ? [K, M] : [M, K]), tf.tensor2d(b, tb ? [N, K] : [K, N]), ta, tb),
          );
          assert.deepEqual(got.shape, [M, N]);
          closeTo(values(got), want, `${M}x${K}x${N} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
        }),
        { numRuns: 80 },
      );
      // One product larger than a panel in every direction.
      const [M, K, N] = [37, 300, 45];
      const a = random(K * M, 7);
      const b = random(N * K, 8);
      const want = new Float64Array(M * N);
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) want[i * N + j] += a[k * M + i] * b[j * K + k];
      closeTo(
        values(tf.tidy(() => matMul(tf.tensor2d(a, [K, M]), tf.tensor2d(b, [N, K]), true, true))),
        want,
        'large TT',
      );
    });

    test('head products address every head inside [tokens, hidden] activations', () => {
      const small = fc.integer({ min: 1, max: 6 });
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 11 }),
          fc.integer({ min: 1, max: 3 }),
          small,
          fc.nat(1000),
          (B, T, A, D, seed) => {
            const h = { B, T, A, D };
            const x = random(B * T * A * D, seed);
            const y = random(B * T * A * D, seed + 1);
            const p = random(B * A * T * T, seed + 2);
            const want = referenceHeads(h, x, y, p);
            const [scores, context, contextT] = tf.tidy(() => {
              const [xt, yt, pt] = [
                tf.tensor2d(x, [B * T, A * D]),
                tf.tensor2d(y, [B * T, A * D]),
                tf.tensor4d(p, [B, A, T, T]),
              ];
              return [headScores(xt, yt, h), headContext(pt, yt, h), headContext(pt, yt, h, true)];
            });
            assert.deepEqual(scores.shape, [B, A, T, T]);
            assert.deepEqual(context.shape, [B * T, A * D]);
            closeTo(values(scores), want.scores, 'scores');
            closeTo(values(context), want.context, 'context');
            closeTo(values(contextT), want.contextT, 'transposed context');
          },
        ),
        { numRuns: 40 },
      );
    });

    test('columnSum sums every column, including a remainder past the last group of four', () => {
      for (const [rows, cols] of [
        [1, 1],
        [5, 3],
        [33, 130],
        [1024, 7],
      ]) {
        const x = random(rows * cols, rows + cols);
        const want = new Float64Array(cols);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) want[j] += x[i * cols + j];
        const got = values(tf.tidy(() => columnSum(tf.tensor2d(x, [rows, cols]))));
        closeTo(got, want, `${rows}x${cols}`);
        if (tf.getBackend() !== 'wasm') continue;
        // On wasm each column is the float32 sum of its rows in order, bit for bit, however the kernel walks memory.
        const ordered = new Float32Array(cols);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) ordered[j] += x[i * cols + j];
        assert.deepEqual(got, ordered, `${rows}x${cols} in row order`);
      }
    });

    test("dropout masks are the generator's own masks, from the same draws, whatever their size", () => {
      for (const n of [1, 7, 8, 9, 1000, 4097])
        for (const rate of [0.1, 0.5, 0.999, 1e-9]) {
          const [a, b] = [new Rng(n), new Rng(n)];
          const got = values(dropoutMask(a, [n], rate));
          assert.deepEqual(got, b.dropoutMask(n, rate), `${n} elements at rate ${rate}`);
          assert.equal(a.nextU32(), b.nextU32(), 'the same number of draws taken');
        }
    });

    test('LayerNorm and its backward match float64 and, on wasm, the tfjs ops they replace bit for bit', () => {
      for (const [rows, cols, eps] of [
        [1, 1, 1e-12],
        [3, 5, 1e-5],
        [5, 130, 1e-12],
        [6, 768, 1e-12],
        [9, 7, 1e-5],
      ]) {
        const [x, dy] = [random(rows * cols, rows), random(rows * cols, cols)].map((v) => v.map((e) => e * 3));
        const [g, b] = [random(cols, 7).map((e) => 1 + e / 2), random(cols, 8)];
        const what = `${rows}x${cols}`;
        // float64: y = xhat g + b; dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy g.
        const want = { y: new Float64Array(rows * cols), dx: new Float64Array(rows * cols) };
        const [dg, db] = [new Float64Array(cols), new Float64Array(cols)];
        for (let i = 0; i < rows; i++) {
          const row = Array.from(x.subarray(i * cols, (i + 1) * cols));
          const mean = row.reduce((s, v) => s + v, 0) / cols;
          const rstd = 1 / Math.sqrt(row.reduce((s, v) => s + (v - mean) ** 2, 0) / cols + eps);
          const xhat = row.map((v) => (v - mean) * rstd);
          const dxhat = xhat.map((_, j) => dy[i * cols + j] * g[j]);
          const m1 = dxhat.reduce((s, v) => s + v, 0) / cols;
          const m2 = dxhat.reduce((s, v, j) => s + v * xhat[j], 0) / cols;
          xhat.forEach((h, j) => {
            want.y[i * cols + j] = h * g[j] + b[j];
            want.dx[i * cols + j] = rstd * (dxhat[j] - m1 - h * m2);
            dg[j] += dy[i * cols + j] * h;
            db[j] += dy[i * cols + j];
          });
        }
        for (const [gain, bias] of [
          [true, true],
          [false, true],
          [true, false],
        ]) {
          const got = tf.tidy(() => {
            const t = { x: tf.tensor2d(x, [rows, cols]), g: tf.tensor1d(g), b: tf.tensor1d(b) };
            const f = layerNorm(t.x, t.g, t.b, eps);
            const r = layerNormBackward(tf.tensor2d(dy, [rows, cols]), t.g, f.xhat, f.rstd, gain, bias);
            return [f.y, r.dx, r.dg ?? tf.zeros([0]), r.db ?? tf.zeros([0])];
          });
          const [y, dx, gotDg, gotDb] = got.map(values);
          closeTo(y, want.y, `${what} y`);
          closeTo(dx, want.dx, `${what} dx`);
          closeTo(gotDg, gain ? dg : [], `${what} gain gradient`);
          closeTo(gotDb, bias ? db : [], `${what} bias gradient`);
          if (tf.getBackend() !== 'wasm') continue;
          // The tfjs ops LayerNorm ran as before the wasm kernel: the same float32 operations, in the same order.
          const ops = tf
            .tidy(() => {
              const [xt, dyt, gt, bt] = [
                tf.tensor2d(x, [rows, cols]),
                tf.tensor2d(dy, [rows, cols]),
                tf.tensor1d(g),
                tf.tensor1d(b),
              ];
              const xc = tf.sub(xt, tf.mean(xt, -1, true));
              const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
              const xhat = tf.mul(xc, rstd);
              const dxhat = tf.mul(dyt, gt);
              const centred = tf.sub(dxhat, tf.mean(dxhat, -1, true));
              const dxt = tf.mul(rstd, tf.sub(centred, tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true))));
              return [tf.add(tf.mul(xhat, gt), bt), dxt, columnSum(tf.mul(dyt, xhat) as tf.Tensor2D), columnSum(dyt)];
            })
            .map(values);
          assert.deepEqual(y, ops[0], `${what} y bit for bit`);
          assert.deepEqual(dx, ops[1], `${what} dx bit for bit`);
          if (gain) assert.deepEqual(gotDg, ops[2], `${what} gain gradient bit for bit`);
          if (bias) assert.deepEqual(gotDb, ops[3], `${what} bias gradient bit for bit`);
        }
      }
    });

    test('GELU and its derivative match the exact normal CDF to float precision, far into both tails', () => {
      // Phi by the Maclaurin series of erf (exact in doubles for |x| <= 6); beyond, the tails are exact to float.
      const phi = (x: number) => Math.exp((-x * x) / 2) / Math.sqrt(2 * Math.PI);
      const Phi = (x: number) => {
        if (Math.abs(x) > 6) return x > 0 ? 1 : 0;
        const z = x / Math.SQRT2;
        let term = z;
        let sum = z;
        for (let n = 1; n < 200; n++) {
          term *= (-z * z) / n;
          sum += term / (2 * n + 1);
        }
        return 0.5 + sum / Math.sqrt(Math.PI);
      };
      const xs = Float32Array.from([
        0,
        1e-3,
        -1e-3,
        0.5,
        -0.5,
        1,
        -1,
        3,
        -3,
        5.5,
        -5.5,
        9,
        -9,
        30,
        -30,
        0.25,
        ...random(4000, 11).map((v) => v * 7),
      ]);
      const { y, dydx } = tf.tidy(() => gelu(tf.tensor2d(xs, [xs.length / 4, 4])));
      const [yv, dv] = [values(y), values(dydx)];
      xs.forEach((x, i) => {
        assert.ok(
          Math.abs(yv[i] - x * Phi(x)) <= 3e-7 * (1 + Math.abs(x)),
          `gelu(${x}) = ${yv[i]}, want ${x * Phi(x)}`,
        );
        assert.ok(Math.abs(dv[i] - (Phi(x) + x * phi(x))) <= 3e-7 * (1 + Math.abs(x)), `gelu'(${x}) = ${dv[i]}`);
      });
    });

    test('the products allocate nothing that outlives them', () => {
      const before = tf.memory().numTensors;
      const [a, b] = [tf.tensor2d(random(64, 1), [8, 8]), tf.tensor2d(random(64, 2), [8, 8])];
      for (let i = 0; i < 20; i++)
        tf.dispose([matMul(a, b, true, false), columnSum(a), headScores(a, b, { B: 2, T: 4, A: 2, D: 4 })]);
      tf.dispose([a, b]);
      assert.equal(tf.memory().numTensors, before);
    });
  });
}
