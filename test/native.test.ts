import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { selectBackend } from '../src/engine/backend.js';
import { addIndexedRows, gelu, headContext, headScores, matMul } from '../src/engine/kernels.js';
import {
  arithmeticOf,
  chooseKernels,
  keptMeasurement,
  type KernelChoice,
  nativeBlocks,
  nativeKernelNames,
  nativeKernels,
  selectKernel,
  type Arithmetic,
} from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { GLUE, REPO, tinyModelRecipe, tmpProject } from './helpers.js';
import { lossesOf, modelBytes } from './strategy-checks.js';

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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The float32 next to `x` (a float32) towards `dir`. */
function nextFloat(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? 2 ** -149 : -(2 ** -149);
  f32[0] = x;
  u32[0] += x > 0 === dir > 0 ? 1 : -1;
  return f32[0];
}

/** a*b + c rounded once to float32 (a, b, c float32): the product is exact in float64, the sum's error from TwoSum. */
function fusedMultiplyAdd(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const v = s - p;
  const err = p - (s - v) + (c - v);
  const r = Math.fround(s);
  if (err === 0 || r === s) return r;
  // s rounded to float64 may sit exactly midway between two float32s while the exact sum does not.
  const other = nextFloat(r, s - r);
  if (s - r !== other - s) return r;
  return err > 0 === other > r ? other : r;
}

/** Float32 to bfloat16 and back, rounded to nearest even. */
function bf16(x: number): number {
  f32[0] = x;
  u32[0] = ((u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

/**
 * Element checks of one kernel's arithmetic, from the k-ordered terms a_k, b_k of a dot product: exact is
 * ((0 + a0*b0) + a1*b1) + ... with every product and sum rounded to float32; fma rounds each multiply-add once;
 * bf16 is the float64 dot product of the bfloat16-rounded operands within float32 summation's error bound.
 */
function checkElement(
  arithmetic: Arithmetic,
  got: number,
  a: (k: number) => number,
  b: (k: number) => number,
  K: number,
) {
  if (arithmetic === 'bf16') {
    let sum = 0;
    let abs = 0;
    for (let k = 0; k < K; k++) {
      sum += bf16(a(k)) * bf16(b(k));
      abs += Math.abs(bf16(a(k)) * bf16(b(k)));
    }
    return Math.abs(got - sum) <= (K + 1) * 2 ** -24 * abs;
  }
  let acc = 0;
  for (let k = 0; k < K; k++)
    acc = arithmetic === 'fma' ? fusedMultiplyAdd(a(k), b(k), acc) : Math.fround(acc + Math.fround(a(k) * b(k)));
  return Object.is(got, acc) || got === acc;
}

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

  // The passes run at the width of the run's matrix kernel: both widths here where the CPU has them.
  for (const width of ['avx512f', 'avx2'])
    test(`GELU on ${width} is the wasm kernel's, bit for bit, at lengths off its lanes (a partial last vector)`, (t) => {
      if (!native.includes(width)) return t.skip(`this CPU has no ${width}`);
      selectKernel(width);
      const fast = nativeKernels().native?.gelu;
      selectKernel(undefined);
      assert.ok(fast, `the ${width} kernel brings its GELU`);
      const heap = (tf.backend() as unknown as { wasm: { asm: { memory: WebAssembly.Memory } } }).wasm.asm.memory
        .buffer as ArrayBuffer;
      assert.throws(() => fast(heap, heap.byteLength - 8, 0, 64, 4), RangeError);
      const special = [0, -0, 1e-3, -1e-3, 0.5, -0.5, 3, -3, 9, -9, 30, -30, 90, -90, 1e-30, -1e-30];
      for (const n of [4, 12, 16, 20, 1000, 4100]) {
        const x = random(n, n).map((v, i) => (i < special.length ? special[i] : v * 8));
        const run = () => {
          const { y, dydx } = gelu(tf.tensor2d(x, [n / 4, 4]));
          return tf.concat([tf.reshape(y, [-1]), tf.reshape(dydx, [-1])]);
        };
        assert.ok(bytesOn(width, run).equals(bytesOn('wasm', run)), `${n} elements`);
      }
      selectKernel(undefined);
    });

  for (const width of ['avx512f', 'avx2'])
    test(`a pass's weighted gradients on ${width} are the JavaScript loop's, bit for bit, in shared memory too`, (t) => {
      if (!native.includes(width)) return t.skip(`this CPU has no ${width}`);
      selectKernel(width);
      const weighted = nativeKernels().native?.weighted;
      selectKernel(undefined);
      assert.ok(weighted, `the ${width} kernel brings its weighting`);
      for (const n of [1, 7, 8, 9, 1000, 4099])
        for (const w of [1, 0.25, 1 / 3, 0.7])
          for (const accumulate of [false, true]) {
            const [g0, pass] = [random(n, n), random(n, n + 1).map((v) => v * 1e3)];
            const want = Float32Array.from(g0);
            for (let j = 0; j < n; j++) want[j] = accumulate ? want[j] + w * pass[j] : w * pass[j];
            const got = new Float32Array(new SharedArrayBuffer(4 * n));
            got.set(g0);
            weighted(got, pass, w, accumulate);
            assert.ok(
              Buffer.from(got.buffer).equals(Buffer.from(want.buffer)),
              `${n} elements, w ${w}, accumulate ${accumulate}`,
            );
          }
      assert.throws(() => weighted(new Float32Array(3), new Float32Array(4), 1, true), /one length/);
    });

  for (const width of ['avx512f', 'avx2'])
    test(`embedding rows added on ${width} (the sum's gather, the gradient's scatter) are the JavaScript loop's, bit for bit`, (t) => {
      if (!native.includes(width)) return t.skip(`this CPU has no ${width}`);
      const special = [NaN, Infinity, -Infinity, -0, 0, 1e-40, -1e-40, 3e38, -3e38, 1e-7];
      const values = (n: number, seed: number) =>
        random(n, seed).map((v, i) => (i % 7 === 3 ? special[(i >> 3) % special.length] : v * 100));
      const rowsOf = (n: number, rows: number, seed: number) => {
        const r = new Rng(seed);
        return Int32Array.from({ length: n }, () => r.int(rows));
      };
      const on = (kernel: string, run: () => Float32Array) => {
        selectKernel(kernel);
        try {
          return Buffer.from(run().buffer);
        } finally {
          selectKernel(undefined);
        }
      };
      for (const E of [1, 5, 8, 16, 17, 40, 128])
        for (const weight of [1, 0.25, 1 / 3]) {
          const [tokens, rows] = [37, 6];
          const table = values(rows * E, E);
          const tokenRows = values(tokens * E, E + 1);
          const ids = rowsOf(tokens, rows, E);
          // A gather into rows of its own (a sum over tables), then a scatter into shared memory (a shard's gradient),
          // several tokens sharing a row.
          const gather = () => {
            const out = values(tokens * E, E + 2);
            addIndexedRows(out, null, table, ids, tokens, E, weight);
            return out;
          };
          const scatter = () => {
            const g = new Float32Array(new SharedArrayBuffer(4 * rows * E));
            g.set(table);
            addIndexedRows(g, ids, tokenRows, null, tokens, E, weight);
            return g;
          };
          for (const run of [gather, scatter])
            assert.ok(on(width, run).equals(on('wasm', run)), `${run.name}, width ${E}, weight ${weight}`);
        }
      selectKernel(width);
      try {
        const [dst, src] = [new Float32Array(8), new Float32Array(8)];
        assert.throws(() => addIndexedRows(dst, Int32Array.of(0, 2), src, null, 2, 4, 1), RangeError);
        assert.throws(() => addIndexedRows(dst, null, src, Int32Array.of(-1), 1, 4, 1), RangeError);
        assert.throws(() => addIndexedRows(dst, null, src, null, 3, 4, 1), RangeError);
      } finally {
        selectKernel(undefined);
      }
    });

  for (const kernel of native) {
    const arithmetic = arithmeticOf(kernel);
    /** Every element of an M x N product of row-major a (M x K) and b (K x N) as the kernel's arithmetic has it. */
    const checkProduct = (
      got: Float32Array,
      a: Float32Array,
      b: Float32Array,
      M: number,
      K: number,
      N: number,
      elements?: number,
    ) => {
      const rng = new Rng(M * 7919 + N);
      const count = elements ?? M * N;
      for (let e = 0; e < count; e++) {
        const at = elements === undefined ? e : rng.int(M * N);
        const [i, j] = [Math.floor(at / N), at % N];
        if (
          !checkElement(
            arithmetic,
            got[at],
            (k) => a[i * K + k],
            (k) => b[k * N + j],
            K,
          )
        )
          return `element (${i}, ${j}) of ${M}x${K}x${N}: ${got[at]}`;
      }
      return undefined;
    };
    const transposeOf = (x: Float32Array, rows: number, cols: number) => {
      const t = new Float32Array(x.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
      return t;
    };
    /** The product of row-major a (M x K) and b (K x N) through matMul, each operand stored transposed when asked. */
    const productOf =
      (a: Float32Array, b: Float32Array, M: number, K: number, N: number, ta: boolean, tb: boolean) => () =>
        matMul(
          tf.tensor2d(ta ? transposeOf(a, M, K) : a, ta ? [K, M] : [M, K]),
          tf.tensor2d(tb ? transposeOf(b, K, N) : b, tb ? [N, K] : [K, N]),
          ta,
          tb,
        );

    test(`${kernel} (${arithmetic}): every element of matMul is the ${arithmetic} k-ordered dot product, for sizes and transposes off the register tile`, () => {
      const dim = fc.integer({ min: 1, max: 150 });
      fc.assert(
        fc.property(dim, dim, dim, fc.boolean(), fc.boolean(), fc.nat(1000), (M, K, N, ta, tb, seed) => {
          const a = random(M * K, seed);
          const b = random(K * N, seed + 1);
          const product = productOf(a, b, M, K, N, ta, tb);
          const got = new Float32Array(bytesOn(kernel, product).buffer.slice(0));
          assert.equal(checkProduct(got, a, b, M, K, N), undefined, `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
          // Exact kernels are the wasm kernel's arithmetic: the same bytes.
          if (arithmetic === 'exact') assert.ok(bytesOn(kernel, product).equals(bytesOn('wasm', product)));
        }),
        { numRuns: 40 },
      );
    });

    test(`${kernel}: products past every cache block (K over two blocks, M and N over one) keep the k order`, () => {
      const { kc, mc, nc } = nativeBlocks()!;
      const [M, K, N] = [mc + 5, kc + 76, nc + 28];
      const a = random(M * K, 3);
      const b = random(K * N, 4);
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
      ]) {
        const product = productOf(a, b, M, K, N, ta, tb);
        const bytes = bytesOn(kernel, product);
        if (arithmetic === 'exact')
          assert.ok(bytes.equals(bytesOn('wasm', product)), `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
        // Sampled elements: each is a dot product crossing the KC boundary through C.
        const got = new Float32Array(bytes.buffer.slice(0));
        assert.equal(checkProduct(got, a, b, M, K, N, 300), undefined, `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
      }
    });

    if (arithmetic === 'bf16')
      test(`${kernel}: each operand is rounded as bf16() rounds it (ties to even, NaN kept) on every packing path`, () => {
        // One operand in [0.5, 1.5) with random low bits (every fourth a tie), the other integers in [-4, 4]: every
        // product and partial sum is a multiple of 2^-8 below 2^13, exact in float32, so each element is its exact sum.
        const rounded = (n: number, seed: number) =>
          random(n, seed).map((v, i) => {
            f32[0] = 1 + v / 2;
            if (i % 4 === 1) u32[0] = (u32[0] & 0xffff0000) | 0x8000;
            return f32[0];
          });
        const integers = (n: number, seed: number) => random(n, seed).map((v) => Math.round(v * 4));
        const { kc, mc } = nativeBlocks()!;
        for (const [M, K, N] of [
          [1, 1, 1],
          [7, 33, 65],
          [13, 64, 17],
          [mc + 5, 70, 130],
          [6, kc + 77, 64],
        ])
          for (const roundedA of [true, false])
            for (const [ta, tb] of [
              [false, false],
              [true, false],
              [false, true],
              [true, true],
            ]) {
              const a = roundedA ? rounded(M * K, M + K) : integers(M * K, M + K);
              const b = roundedA ? integers(K * N, N + K) : rounded(K * N, N + K);
              if (M > 1 && roundedA) a[K + 2] = NaN;
              if (N > 1 && !roundedA) b[2 * N + 1] = NaN;
              const product = productOf(a, b, M, K, N, ta, tb);
              const got = new Float32Array(bytesOn(kernel, product).buffer.slice(0));
              for (let i = 0; i < M; i++)
                for (let j = 0; j < N; j++) {
                  let sum = 0;
                  for (let k = 0; k < K; k++) sum += bf16(a[i * K + k]) * bf16(b[k * N + j]);
                  const at = `element (${i}, ${j}) of ${M}x${K}x${N}, ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
                  assert.ok(Object.is(got[i * N + j], sum), `${at}: ${got[i * N + j]}, exact ${sum}`);
                }
            }
      });

    test(`${kernel}: head products inside [tokens, hidden] activations are each head's ${arithmetic} dot products`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 20 }),
          fc.nat(1000),
          (B, T, A, D, seed) => {
            const h = { B, T, A, D };
            const H = A * D;
            const [x, y, p] = [random(B * T * H, seed), random(B * T * H, seed + 1), random(B * A * T * T, seed + 2)];
            const inputs = () =>
              [tf.tensor2d(x, [B * T, H]), tf.tensor2d(y, [B * T, H]), tf.tensor4d(p, [B, A, T, T])] as const;
            const got = (product: () => tf.Tensor) => new Float32Array(bytesOn(kernel, product).buffer.slice(0));
            const scores = got(() => headScores(inputs()[0], inputs()[1], h));
            const context = got(() => headContext(inputs()[2], inputs()[1], h));
            const transposed = got(() => headContext(inputs()[2], inputs()[1], h, true));
            const P = (bb: number, a: number, t: number, s: number) => p[((bb * A + a) * T + t) * T + s];
            for (let bb = 0; bb < B; bb++)
              for (let a = 0; a < A; a++)
                for (let t = 0; t < T; t++)
                  for (let s = 0; s < T; s++) {
                    const score = scores[((bb * A + a) * T + t) * T + s];
                    const row = (m: Float32Array, r: number) => (k: number) => m[(bb * T + r) * H + a * D + k];
                    assert.ok(checkElement(arithmetic, score, row(x, t), row(y, s), D), `scores ${JSON.stringify(h)}`);
                  }
            for (let bb = 0; bb < B; bb++)
              for (let t = 0; t < T; t++)
                for (let c = 0; c < H; c++) {
                  const [a, d] = [Math.floor(c / D), c % D];
                  const yAt = (k: number) => y[(bb * T + k) * H + a * D + d];
                  const at = (bb * T + t) * H + c;
                  assert.ok(
                    checkElement(arithmetic, context[at], (k) => P(bb, a, t, k), yAt, T),
                    `context ${JSON.stringify(h)}`,
                  );
                  assert.ok(
                    checkElement(arithmetic, transposed[at], (k) => P(bb, a, k, t), yAt, T),
                    `transposed context ${JSON.stringify(h)}`,
                  );
                }
          },
        ),
        { numRuns: 20 },
      );
    });
  }

  test(
    'fused kernels of either width give the same bits (the same fused k order)',
    { skip: native.filter((k) => arithmeticOf(k) === 'fma').length < 2 && 'one fused kernel here' },
    () => {
      const [M, K, N] = [70, 500, 90];
      const [a, b] = [random(M * K, 5), random(K * N, 6)];
      const product = () => matMul(tf.tensor2d(a, [M, K]), tf.tensor2d(b, [K, N]));
      assert.ok(bytesOn('avx512f-fma', product).equals(bytesOn('avx2-fma', product)));
    },
  );

  test('runtime.kernels chooses by name and arithmetic: exact, fma, bf16, or refuses what this CPU lacks', () => {
    const exact = chooseKernels('exact', 'fp32');
    assert.ok('kernel' in exact && exact.arithmetic === 'exact' && native.includes(exact.kernel));
    const fused = native.filter((k) => arithmeticOf(k) === 'fma');
    const fma = chooseKernels('fma', 'fp32');
    if (fused.length) assert.ok('kernel' in fma && fma.kernel === fused[0]);
    else assert.ok('refused' in fma && /fma/.test(fma.refused));
    const bf = chooseKernels('auto', 'bf16');
    // AMX tiles first where the CPU has them; a checkpoint's other bf16 kernel is kept on a resume.
    const bf16Kernels = native.filter((k) => arithmeticOf(k) === 'bf16');
    if (bf16Kernels.length) {
      assert.ok('kernel' in bf && bf.kernel === bf16Kernels[0] && bf.arithmetic === 'bf16');
      assert.equal(bf16Kernels[0] === 'amx-bf16', native.includes('amx-bf16'));
      assert.match(bf.why, bf.kernel === 'amx-bf16' ? /AMX tiles/ : /AVX512_BF16 dot products/);
      for (const other of bf16Kernels.slice(1)) {
        const resumed = chooseKernels('auto', 'bf16', other);
        assert.ok(
          'kernel' in resumed && resumed.kernel === other && /the kernel the checkpoint trained with/.test(resumed.why),
        );
      }
    } else assert.ok('refused' in bf && /AVX512_BF16/.test(bf.refused) && /never emulated/.test(bf.refused));
    const auto = chooseKernels('auto', 'fp32');
    assert.ok('kernel' in auto && auto.arithmetic !== 'bf16' && /measured|no fused/.test(auto.why));
    // results.json records `why`: it must read the same on every run here (the measured rates go to the log only).
    assert.doesNotMatch(auto.why, /\d/);
    // A resumed checkpoint's kernel (any fp32 one but auto's) is taken where this CPU runs it, and `why` says so;
    // the kernel auto takes anyway leaves `why` as it was.
    for (const other of native.filter((k) => arithmeticOf(k) !== 'bf16' && k !== auto.kernel)) {
      const resumed = chooseKernels('auto', 'fp32', other);
      assert.ok('kernel' in resumed && resumed.kernel === other, JSON.stringify(resumed));
      assert.match(resumed.why, /the kernel the checkpoint trained with/);
    }
    assert.deepEqual(chooseKernels('auto', 'fp32', auto.kernel), auto);
  });

  test('auto measures once per machine and keeps it: a later run reads it back, another CPU or an unreadable file measures anew', () => {
    const dir = tmpProject();
    let calls = 0;
    const measure = (exact: number, fma: number) => () => (calls++, { exact, fma });
    const first = keptMeasurement(dir, 'cpu-a', measure(90, 100));
    assert.deepEqual([first.exact, first.fma, calls], [90, 100, 1]);
    assert.match(first.kept, /as measured on \d{4}-\d\d-\d\d, kept in .*kernels-cpu-a\.json/);
    // A later run (whatever it would measure) chooses as the first did.
    const later = keptMeasurement(dir, 'cpu-a', measure(50, 100));
    assert.deepEqual([later.exact, later.fma, calls], [90, 100, 1]);
    assert.deepEqual([keptMeasurement(dir, 'cpu-b', measure(50, 100)).exact, calls], [50, 2]);
    fs.writeFileSync(path.join(dir, 'kernels-cpu-a.json'), '{"exact": 9');
    const replaced = keptMeasurement(dir, 'cpu-a', measure(60, 100));
    assert.deepEqual([replaced.exact, calls], [60, 3]);
    assert.match(replaced.kept, /replaced an unreadable file/);
    assert.equal(keptMeasurement(dir, 'cpu-a', measure(1, 1)).exact, 60);
    assert.deepEqual(
      fs
        .readdirSync(dir)
        .filter((f) => f.startsWith('kernels-'))
        .sort(),
      ['kernels-cpu-a.json', 'kernels-cpu-b.json'],
      'no temporary left',
    );
    // Where nothing can be written (a file stands where the folder would be), it measures once per process.
    const blocked = path.join(dir, 'blocked');
    fs.writeFileSync(blocked, '');
    const unkept = keptMeasurement(blocked, 'cpu-a', measure(70, 100));
    assert.match(unkept.kept, /not kept in .*blocked/);
    assert.deepEqual([keptMeasurement(blocked, 'cpu-a', measure(1, 1)).exact, calls], [70, 4]);
  });

  test("auto follows the machine's kept measurement (fused where it measured 1.1x), its file named by CPUID as /proc/cpuinfo names the CPU", (t) => {
    const fused = native.filter((k) => arithmeticOf(k) === 'fma');
    const exact = native.filter((k) => arithmeticOf(k) === 'exact');
    if (!fused.length || !exact.length) return t.skip('auto measures only where both arithmetics run');
    const saved = process.env.CHILDTUNE_KERNELS_CACHE;
    try {
      const dir = (process.env.CHILDTUNE_KERNELS_CACHE = tmpProject());
      const auto = chooseKernels('auto', 'fp32') as KernelChoice;
      assert.match(auto.measured!, /kept in/);
      const [file] = fs.readdirSync(dir).filter((f) => f.startsWith('kernels-'));
      if (fs.existsSync('/proc/cpuinfo')) {
        const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
        const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(\\S+)`, 'm').exec(info)![1];
        const id = [field('vendor_id'), field('cpu family'), field('model'), field('stepping')].join('-');
        assert.equal(file, `kernels-${id}-${native.join('-')}.json`);
      }
      for (const [rates, arithmetic] of [
        [{ exact: 50, fma: 100 }, 'fma'],
        [{ exact: 85, fma: 100 }, 'fma'],
        [{ exact: 95, fma: 100 }, 'exact'],
      ] as const) {
        fs.writeFileSync(path.join(dir, file), JSON.stringify({ ...rates, date: 'then' }));
        const choice = chooseKernels('auto', 'fp32') as KernelChoice;
        assert.equal(choice.arithmetic, arithmetic);
        assert.match(choice.measured!, /as measured on then/);
      }
    } finally {
      if (saved === undefined) delete process.env.CHILDTUNE_KERNELS_CACHE;
      else process.env.CHILDTUNE_KERNELS_CACHE = saved;
    }
  });
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
runtime: {backend: wasm, threads: 2, kernels: exact}
`);
    const run = (env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        [path.join(REPO, 'bin', 'childtune.js'), 'run', recipe, '--json', '--allow-path', path.dirname(GLUE)],
        { env: { ...process.env, ...env }, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const dir = JSON.parse(r.stdout)[0].dir as string;
      return { losses: lossesOf(dir), weights: modelBytes(dir), log: r.stderr };
    };
    const fallback = run({ CHILDTUNE_NATIVE: '0' });
    const fast = run({});
    assert.match(fallback.log, /matrix products: wasm matrix kernels \(CHILDTUNE_NATIVE=0; runtime.kernels: exact/);
    assert.match(fast.log, /matrix products: native (avx512f|avx2) matrix kernels/);
    assert.ok(fallback.losses.length >= 4);
    assert.deepEqual(fast.losses, fallback.losses);
    assert.ok(fast.weights.equals(fallback.weights), 'the trained weights differ between the kernels');
  },
);
