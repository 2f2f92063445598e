import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { selectBackend } from '../src/engine/backend.js';
import { adamwRange, adamwStep, applyKeepBits, jsPasses } from '../src/engine/optimizer.js';
import { nativeKernelNames, nativeKernels, selectKernel } from '../src/engine/native.js';
import { OptimizerKernels, planArenas, SharedArena } from '../src/engine/optimizer-wasm.js';
import { sizeOf } from '../src/engine/params.js';
import type { EncoderClassifier } from '../src/engine/model.js';
import { sliceBatch } from '../src/engine/batch.js';
import { keepThreshold, Rng, streamSeed } from '../src/engine/rng.js';
import { partition, SEGMENT_GRAIN, UPDATE_BLOCK } from '../src/engine/parallel/partition.js';
import { reduceSegment, updateSegment } from '../src/engine/parallel/shard.js';
import { DataParallel } from '../src/run/parallel.js';
import { bitsetBytes, popcount } from '../src/engine/bitset.js';
import { childTuningF, F_CHUNK } from '../src/strategies/child-tuning-f/index.js';
import { maskRange } from '../src/strategies/strategy.js';
import { microModel, randomMicroBatches } from './helpers.js';

/** A two-thread wasm pool over `model` (AdamW without decay): the data-parallel cases below compare it with one thread. */
const twoThreads = (model: EncoderClassifier) =>
  DataParallel.start(model, {
    threads: 2,
    backend: 'wasm',
    adam: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
  });
describe('data parallelism', () => {
  test('the partition covers every parameter element exactly once and cuts tensors only at F chunk boundaries', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 8 }),
        (sizes, parts) => {
          const segments = partition(sizes, parts);
          assert.equal(segments.length, parts);
          const seen = sizes.map((n) => new Uint8Array(n));
          for (const part of segments)
            for (const { index, lo, hi } of part) {
              assert.ok(lo % F_CHUNK === 0, 'starts on a chunk boundary');
              for (let j = lo; j < hi; j++) seen[index][j]++;
            }
          for (const s of seen) assert.ok(s.every((c) => c === 1));
        },
      ),
    );
  });

  test("Child-Tuning-F's mask is the same however the parameters are split across threads", () => {
    const spec = childTuningF(
      0.3,
      'all',
      [{ name: 'w', shape: [50_000], transposed: false, decay: true, group: 'encoder', init: 'normal' }],
      9,
    ).spec;
    const whole = new Float32Array(50_000).fill(1);
    maskRange(spec, 0, whole, 0, whole.length, 4);
    for (const parts of [2, 3, 5]) {
      const split = new Float32Array(50_000).fill(1);
      for (const part of partition([split.length], parts))
        for (const s of part) maskRange(spec, 0, split, s.lo, s.hi, 4);
      assert.deepEqual(split, whole);
    }
  });

  // AdamW and F's mask run natively at the width of the run's matrix kernel (AVX-512 or AVX2), in optimizer.wat
  // elsewhere (and with CHILDTUNE_NATIVE=0): each here where the CPU has it.
  for (const form of ['wasm', 'avx512f', 'avx2'])
    test(`the optimizer passes (clip scale, F mask, AdamW; ${form}) equal the JavaScript passes bit for bit`, (t) => {
      if (form !== 'wasm' && !nativeKernelNames().includes(form)) return t.skip(`this CPU has no ${form}`);
      selectKernel(form);
      if (form !== 'wasm') assert.ok(nativeKernels().native?.adamw && nativeKernels().native?.fapply);
      try {
        fc.assert(
          fc.property(
            fc.integer({ min: 1, max: 9000 }),
            fc.nat(40),
            fc.nat(1000),
            fc.double({ min: 0.01, max: 1, noNaN: true }),
            fc.integer({ min: 1, max: 50 }),
            (n, lo, seed, p, step) => {
              const rng = new Rng(seed);
              const fill = (x: Float32Array, f: () => number) => x.forEach((_, i) => (x[i] = f()));
              const arena = SharedArena.create([
                n + lo,
                n + lo,
                n + lo,
                n + lo,
                OptimizerKernels.drawsFor(n + 7),
                Math.ceil((n + lo) / 32),
              ])!;
              const [pw, gw, mw, vw] = [0, 1, 2, 3].map(() => arena.floats(n + lo));
              const kernels = new OptimizerKernels(arena.memory, arena.floats(OptimizerKernels.drawsFor(n + 7)));
              const bitsW = arena.bits(n + lo);
              fill(pw, () => rng.normal());
              fill(gw, () => rng.normal() * 1e-2);
              fill(mw, () => rng.normal() * 1e-3);
              fill(vw, () => rng.next() * 1e-5);
              const [pj, gj, mj, vj] = [pw, gw, mw, vw].map((x) => Float32Array.from(x));
              const hi = lo + n;
              const adam = adamwStep({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 }, step, 1e-3);
              kernels.scale(gw, lo, hi, 0.37);
              for (let j = lo; j < hi; j++) gj[j] *= 0.37;
              // F's draw starts on a byte of the bitset (chunks start at multiples of F_CHUNK).
              const chunkSeed = seed + 1;
              const { threshold, scale } = keepThreshold(p);
              const flo = lo & ~7;
              const bitsJ = new Uint8Array(bitsetBytes(n + lo));
              const keptW = kernels.fmask(gw, bitsW, flo, hi, hi - flo, [chunkSeed], threshold, scale);
              new Rng(chunkSeed).bernoulliBits(bitsJ, flo, hi, threshold);
              applyKeepBits(gj, bitsJ, flo, hi, scale);
              assert.deepEqual(Array.from(bitsW), Array.from(bitsJ));
              assert.equal(keptW, popcount(bitsJ.subarray(flo >> 3), hi - flo));
              // The bitset applied on its own, as D's mask and a replayed F mask are.
              kernels.fapply(gw, bitsW, flo, hi, 1.5);
              applyKeepBits(gj, bitsJ, flo, hi, 1.5);
              kernels.adamw(pw, gw, mw, vw, lo, hi, adam);
              adamwRange(pj, gj, mj, vj, lo, hi, adam);
              assert.deepEqual(
                [pw, gw, mw, vw].map((x) => Array.from(x)),
                [pj, gj, mj, vj].map((x) => Array.from(x)),
              );
            },
          ),
          { numRuns: 60 },
        );
      } finally {
        selectKernel(undefined);
      }
    });

  // F's mask draws natively on AVX-512 (with BW), in optimizer.wat elsewhere (on AVX2 its bitset is applied
  // natively): each here where the CPU has it.
  for (const form of ['wasm', 'avx512f', 'avx2'])
    test(`F's mask over many chunks (${form}: ${form === 'avx512f' ? 'sixteen' : 'four'} at a time in vector lanes, and the rest) equals the JavaScript mask bit for bit`, (t) => {
      if (form !== 'wasm' && !nativeKernelNames().includes(form)) return t.skip(`this CPU has no ${form}`);
      selectKernel(form);
      if (form === 'avx512f') assert.ok(nativeKernels().native?.fmask, 'AVX-512 draws the mask natively');
      try {
        fc.assert(
          fc.property(
            fc.integer({ min: 1, max: 64 }),
            fc.integer({ min: 1, max: 40 }),
            fc.nat(8 * 64),
            fc.nat(1000),
            fc.double({ min: 0.01, max: 1, noNaN: true }),
            (eighths, chunks, tail, seed, p) => {
              const chunk = 8 * eighths;
              const lo = 8 * ((seed % 5) * 3);
              const hi = lo + (chunks - 1) * chunk + Math.min(chunk, 1 + (tail % chunk));
              const arena = SharedArena.create([OptimizerKernels.drawsFor(chunk), hi + 16, Math.ceil((hi + 16) / 32)])!;
              const kernels = new OptimizerKernels(arena.memory, arena.floats(OptimizerKernels.drawsFor(chunk)));
              // Past hi: elements and bits the mask must leave as they are.
              const gW = arena.floats(hi + 16);
              const rng = new Rng(seed);
              const special = [NaN, -NaN, Infinity, -Infinity, -0, 0, 1e-45, -3e-39, 3.4e38];
              gW.forEach((_, i) => (gW[i] = i % 7 === 3 ? special[(i + seed) % special.length] : rng.normal()));
              const gJ = Float32Array.from(gW);
              const bitsW = arena.bits(hi + 16).fill(0xa5);
              const bitsJ = new Uint8Array(bitsetBytes(hi + 16)).fill(0xa5);
              const seeds = Array.from({ length: chunks }, (_, i) => seed * 31 + i);
              const { threshold, scale } = keepThreshold(p);
              const keptW = kernels.fmask(gW, bitsW, lo, hi, chunk, seeds, threshold, scale);
              const keptJ = jsPasses.fmask(gJ, bitsJ, lo, hi, chunk, seeds, threshold, scale);
              assert.deepEqual(Array.from(bitsW), Array.from(bitsJ));
              const words = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
              assert.deepEqual(words(gW), words(gJ));
              assert.equal(keptW, keptJ);
              assert.equal(keptJ, popcount(bitsJ.subarray(lo >> 3), hi - lo));
              // The bitset applied on its own (D's mask, a replayed F mask).
              kernels.fapply(gW, bitsW, lo, hi, 1.5);
              applyKeepBits(gJ, bitsJ, lo, hi, 1.5);
              assert.deepEqual(words(gW), words(gJ));
              // Each chunk is its own generator's stream, as F names them.
              const last = new Uint8Array(bitsetBytes(hi));
              const from = lo + (chunks - 1) * chunk;
              new Rng(seeds[chunks - 1]).bernoulliBits(last, from, hi, threshold);
              assert.deepEqual(
                Array.from(bitsJ.subarray(from >> 3, bitsetBytes(hi))),
                Array.from(last.subarray(from >> 3)),
              );
            },
          ),
          { numRuns: 80 },
        );
      } finally {
        selectKernel(undefined);
      }
    });

  test("an update goes block by block with the result of whole passes over its segment (clip, F's mask, AdamW), on both pass sets", () => {
    const n = 3 * UPDATE_BLOCK + 5000;
    const lo = SEGMENT_GRAIN;
    const spec = {
      name: 'w',
      shape: [n],
      transposed: false,
      decay: true,
      group: 'encoder' as const,
      init: 'normal' as const,
    };
    const hooks = childTuningF(0.3, 'all', [spec], 9).spec;
    const adam = adamwStep({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 }, 3, 1e-3);
    const [step, coef] = [3, 0.37];
    const rng = new Rng(4);
    const start = [rng.normal, () => rng.normal() * 1e-2, () => rng.normal() * 1e-3, () => rng.next() * 1e-5].map((f) =>
      Float32Array.from({ length: n }, f.bind(rng)),
    );
    // The reference: each pass once over the whole segment, in JavaScript.
    const [p, g, m, v] = start.map((x) => Float32Array.from(x));
    const bits = new Uint8Array(bitsetBytes(n));
    jsPasses.scale(g, lo, n, coef);
    const seeds = Array.from({ length: Math.ceil((n - lo) / F_CHUNK) }, (_, i) =>
      streamSeed(9, step, 0, lo / F_CHUNK + i),
    );
    const { threshold, scale } = keepThreshold(0.3);
    const kept = jsPasses.fmask(g, bits, lo, n, F_CHUNK, seeds, threshold, scale);
    adamwRange(p, g, m, v, lo, n, adam);
    const arena = SharedArena.create([n, n, n, n, OptimizerKernels.drawsFor(F_CHUNK), Math.ceil(n / 32)])!;
    const inArena = start.map((x) => {
      const y = arena.floats(n);
      y.set(x);
      return y;
    });
    const kernels = new OptimizerKernels(arena.memory, arena.floats(OptimizerKernels.drawsFor(F_CHUNK)));
    const sides = [
      { passes: jsPasses, arrays: start.map((x) => Float32Array.from(x)), bits: new Uint8Array(bitsetBytes(n)) },
      { passes: kernels, arrays: inArena, bits: arena.bits(n) },
    ];
    for (const side of sides) {
      const [pw, gw, mw, vw] = side.arrays;
      const state = { values: [pw], grads: [[gw]], m: [mw], v: [vw], bits: [side.bits] };
      const keptW = updateSegment(state, { index: 0, lo, hi: n }, hooks, step, coef, adam, true, side.passes);
      assert.equal(keptW, kept);
      assert.deepEqual(Array.from(side.bits), Array.from(bits));
      assert.deepEqual(
        side.arrays.map((x) => Array.from(x)),
        [p, g, m, v].map((x) => Array.from(x)),
      );
    }
  });

  test('the wasm gradient reduce equals the JavaScript reduce bit for bit, for one, two and three shards', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.nat(20),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(1000),
        (n, lo, shards, seed) => {
          const rng = new Rng(seed);
          const arena = SharedArena.create(new Array(2 * shards).fill(n + lo))!;
          const kernels = new OptimizerKernels(arena.memory, new Float32Array(0));
          const inWasm = Array.from({ length: shards }, () => {
            const g = arena.floats(n + lo);
            g.forEach((_, i) => (g[i] = rng.normal()));
            return [g];
          });
          const inJs = inWasm.map((t) => t.map((g) => Float32Array.from(g)));
          const weights = shards === 1 ? [1] : Array.from({ length: shards }, () => rng.next());
          const seg = { index: 0, lo, hi: lo + n };
          assert.equal(reduceSegment(inWasm, seg, weights, 0.5, kernels), reduceSegment(inJs, seg, weights, 0.5));
          assert.deepEqual(Array.from(inWasm[0][0]), Array.from(inJs[0][0]));
        },
      ),
      { numRuns: 60 },
    );
  });

  test('the optimizer state goes in a shared wasm memory up to 4 GiB, and past that in SharedArrayBuffers', async () => {
    assert.ok(SharedArena.create([1000, 1000]));
    assert.equal(SharedArena.create([2 ** 29, 2 ** 29 + 8]), undefined);
    await selectBackend('wasm');
    const model = microModel();
    const dp = await DataParallel.start(model, {
      threads: 2,
      backend: 'wasm',
      adam: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
    });
    assert.ok(
      model.values.every((v) => v.buffer === model.values[0].buffer),
      'weights share one memory',
    );
    assert.ok(dp.moments.m.every((m) => m.buffer === model.values[0].buffer));
    assert.ok(
      dp.shardGrads(1).every((g) => g.buffer === model.values[0].buffer),
      "every shard's gradients too",
    );
    await dp.close();
  });

  test('state past one arena is cut into several, whole tensors each, and a tensor too large alone stays outside', () => {
    const plan = planArenas([3000, 5000, 2000, 200_000, 100], 5, 2, [4096, 4096], 2);
    assert.deepEqual(plan.outside, [3]);
    assert.deepEqual(
      plan.groups.flatMap((g) => g.tensors),
      [0, 1, 2, 4],
    );
    assert.ok(plan.groups.length >= 2);
    // Each group fits two pages with its copies and the scratch.
    for (const g of plan.groups)
      assert.ok(
        SharedArena.create(
          [
            ...g.tensors.flatMap((t) => new Array(g.shards ? 5 : 4).fill([3000, 5000, 2000, 200_000, 100][t])),
            4096,
            4096,
          ],
          2,
        ),
      );
  });

  test('training over several arenas gives the weights of one arena bit for bit', async () => {
    await selectBackend('wasm');
    const batches = randomMicroBatches(2, 3);
    const train = async (arenaPages?: number) => {
      const model = microModel();
      const dp = await DataParallel.start(model, {
        threads: 2,
        backend: 'wasm',
        adam: { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
        arenaPages,
      });
      const strategy = childTuningF(0.5, 'all', model.specs, 3);
      await dp.setStrategy(strategy);
      const buffers = new Set(model.values.map((v) => v.buffer));
      for (const [k, b] of batches.entries()) {
        await dp.gradients(b, k);
        await dp.update(1e-2, 1, strategy);
      }
      await dp.close();
      return { values: model.values.map((v) => Float32Array.from(v)), arenas: buffers.size };
    };
    const one = await train();
    const several = await train(1);
    assert.equal(one.arenas, 1);
    assert.ok(several.arenas >= 2, `${several.arenas} arenas`);
    assert.deepEqual(several.values, one.values);
  });

  test('two threads compute the batch-mean gradient and loss of one (to float rounding)', async () => {
    await selectBackend('wasm');
    const batch = {
      batch: 4,
      seq: 5,
      inputIds: Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 7) % 30)),
      tokenTypeIds: new Int32Array(20),
      attentionMask: Float32Array.from({ length: 20 }, (_, i) => (i % 5 < 4 || i < 10 ? 1 : 0)),
      labels: Float32Array.from([0, 1, 2, 1]),
    };
    const single = microModel();
    const grads = single.specs.map((s) => new Float32Array(sizeOf(s)));
    const { loss } = single.step(batch, grads, null);
    const model = microModel();
    const dp = await twoThreads(model);
    try {
      const r = await dp.gradients(batch, null);
      assert.ok(Math.abs(r.loss - loss) < 1e-6, `${r.loss} vs ${loss}`);
      let sq = 0;
      grads.forEach((g, i) =>
        g.forEach((v, j) => {
          sq += v * v;
          assert.ok(Math.abs(dp.grads[i][j] - v) < 1e-5 + 1e-4 * Math.abs(v), `${single.specs[i].name}[${j}]`);
        }),
      );
      assert.ok(Math.abs(r.norm - Math.sqrt(sq)) < 1e-4 * Math.sqrt(sq));
    } finally {
      await dp.close();
      single.dispose();
    }
  });

  test('accumulating uneven batches (3 rows, then 1) gives the gradient, loss and norm of the whole batch', async () => {
    await selectBackend('wasm');
    const batch = {
      batch: 4,
      seq: 5,
      inputIds: Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 13) % 30)),
      tokenTypeIds: new Int32Array(20),
      attentionMask: Float32Array.from({ length: 20 }, (_, i) => (i % 5 < 3 || i < 5 ? 1 : 0)),
      labels: Float32Array.from([2, 0, 1, 1]),
    };
    const model = microModel();
    const dp = await twoThreads(model);
    try {
      const whole = await dp.gradients(batch, null);
      const expected = dp.grads.map((g) => Float32Array.from(g));
      // Two shards take the first batch's rows 0 and 1-2, one shard the second's row 3: shard 0 accumulates.
      const parts = [sliceBatch(batch, 0, 3), sliceBatch(batch, 3, 4)];
      const r = await dp.accumulate(parts.map((b) => ({ batch: b, dropoutSeed: null, stepSeed: null })));
      assert.ok(Math.abs(r.loss - whole.loss) < 1e-6, `${r.loss} vs ${whole.loss}`);
      assert.ok(Math.abs(r.norm - whole.norm) < 1e-5 * whole.norm, `${r.norm} vs ${whole.norm}`);
      expected.forEach((g, i) =>
        g.forEach((v, j) =>
          assert.ok(Math.abs(dp.grads[i][j] - v) < 1e-6 + 1e-5 * Math.abs(v), `${model.specs[i].name}[${j}]`),
        ),
      );
      // Not the mean of the two batches' means, which would weigh the lone row three times over.
      const means = [(await dp.gradients(parts[0], null)).loss, (await dp.gradients(parts[1], null)).loss];
      assert.ok(Math.abs((means[0] + means[1]) / 2 - r.loss) > 1e-4, `${means} vs ${r.loss}`);
    } finally {
      await dp.close();
    }
  });

  test('after weights are written outside an update (the best epoch restored), every replica predicts with them', async () => {
    await selectBackend('wasm');
    const batch = {
      batch: 4,
      seq: 5,
      inputIds: Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 11) % 30)),
      tokenTypeIds: new Int32Array(20),
      attentionMask: new Float32Array(20).fill(1),
      labels: new Float32Array(4),
    };
    const model = microModel();
    const dp = await twoThreads(model);
    try {
      await dp.infer('predict', batch);
      const restored = microModel({ seed: 7 });
      restored.values.forEach((v, i) => model.values[i].set(v));
      await dp.reload();
      const expected = restored.predict(batch).logits;
      const got = await dp.infer('predict', batch);
      got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `logit ${i}: ${v} vs ${expected[i]}`));
      restored.dispose();
    } finally {
      await dp.close();
    }
  });
});
