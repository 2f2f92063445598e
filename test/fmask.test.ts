import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { parseModelConfig } from '../src/engine/config.js';
import { EncoderClassifier } from '../src/engine/model.js';
import { keepThreshold, Rng, streamSeed } from '../src/engine/rng.js';
import { partition } from '../src/engine/parallel/partition.js';
import { DataParallel } from '../src/run/parallel.js';
import { getBit } from '../src/engine/bitset.js';
import { childTuningF, F_CHUNK } from '../src/strategies/child-tuning-f/index.js';
import { STREAMS } from '../src/strategies/strategy.js';
import { cli, GLUE, randomModel, tinyModelRecipe } from './helpers.js';

const P = 0.3;
const keep = keepThreshold(P).threshold / 65536;
/** How often two independent masks agree on an element. */
const AGREE = keep * keep + (1 - keep) * (1 - keep);
/** Bounds in standard errors: a false alarm about once in 3.5 million runs per check. */
const Z = 5;

/** A model with tensors of several chunks and several tensors of each shape: hidden 64, vocabulary 300 (3 chunks), FFN 256 (2 chunks). */
function statModel(): EncoderClassifier {
  const config = parseModelConfig(
    {
      model_type: 'bert',
      vocab_size: 300,
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 256,
      max_position_embeddings: 32,
      type_vocab_size: 2,
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
    },
    '<test>',
  );
  return randomModel(config, 3);
}

/** A batch of 8 random sentences of up to 16 tokens. */
function batchAt(step: number) {
  const rng = new Rng(streamSeed(11, step));
  const [B, T] = [8, 16];
  const lengths = Array.from({ length: B }, () => 4 + rng.int(T - 3));
  return {
    batch: B,
    seq: T,
    inputIds: Int32Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)] ? 1 + rng.int(299) : 0)),
    tokenTypeIds: new Int32Array(B * T),
    attentionMask: Float32Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)] ? 1 : 0)),
    labels: Float32Array.from({ length: B }, () => rng.int(2)),
  };
}

/** Set bits among the first n, one at a time (independent of the implementation's popcount). */
function setBits(bits: Uint8Array, n: number): number {
  let c = 0;
  for (let j = 0; j < n; j++) c += getBit(bits, j);
  return c;
}

/** A stretch of one step's mask: bits [lo, lo + n) of a tensor's bitset. */
interface Run {
  bits: Uint8Array;
  lo: number;
  n: number;
}

/** Standardised agreement of disjoint pairs of mask stretches: near 0 for independent masks, large when they are correlated. */
function agreementZ(pairs: [Run, Run][]): { z: number; rate: number; n: number } {
  let same = 0,
    n = 0;
  for (const [a, b] of pairs) {
    assert.equal(a.n, b.n);
    for (let j = 0; j < a.n; j++) same += getBit(a.bits, a.lo + j) === getBit(b.bits, b.lo + j) ? 1 : 0;
    n += a.n;
  }
  const rate = same / n;
  return { z: (rate - AGREE) / Math.sqrt((AGREE * (1 - AGREE)) / n), rate, n };
}

describe('Child-Tuning-F masks as a run draws them', () => {
  test('two threads and the wasm passes on real gradients: the applied mask is the counted one, keeps p, and is independent across steps, tensors, chunks and threads', async () => {
    await selectBackend('wasm');
    const model = statModel();
    const sizes = model.values.map((v) => v.length);
    const dp = await DataParallel.start(model, {
      threads: 2,
      backend: 'wasm',
      adam: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
    });
    const strategy = childTuningF(P, 'all', model.specs, streamSeed(7, STREAMS.fMask));
    const masks: Uint8Array[][] = [];
    strategy.masks = { save: (_, bits) => void masks.push(bits.map((b) => Uint8Array.from(b))) };
    const STEPS = 24;
    const { scale } = keepThreshold(P);
    try {
      await dp.setStrategy(strategy);
      for (let s = 0; s < STEPS; s++) {
        await dp.gradients(batchAt(s), streamSeed(5, s));
        const before = dp.grads.map((g) => Float32Array.from(g));
        await dp.update(1e-3, 1, strategy);
        // The gradient AdamW read is the reduced one times scale where the recorded bit is set, zero elsewhere.
        const bits = masks[s];
        before.forEach((g, i) => {
          for (let j = 0; j < g.length; j++) {
            if (dp.grads[i][j] !== Math.fround(g[j] * getBit(bits[i], j) * scale))
              assert.fail(`${model.specs[i].name}[${j}] at step ${s + 1}: the applied mask is not the recorded one`);
          }
        });
      }
    } finally {
      await dp.close();
      model.dispose();
    }
    assert.equal(masks.length, STEPS);

    // Kept counts come from the masks, and together keep p of the elements.
    const counts = strategy.keptCounts();
    const total = sizes.reduce((a, n) => a + n, 0) * STEPS;
    const kept = counts.reduce((a, [, k]) => a + k, 0);
    assert.equal(
      counts.reduce((a, [, , n]) => a + n, 0),
      total,
    );
    counts.forEach(([i, k]) =>
      assert.equal(
        k,
        masks.reduce((a, m) => a + setBits(m[i], sizes[i]), 0),
      ),
    );
    assert.ok(Math.abs(kept / total - keep) < Z * Math.sqrt((keep * (1 - keep)) / total), `kept ${kept / total}`);

    // Per element: keep counts over the steps spread as a binomial's (a mask repeated across steps would spread STEPS times wider).
    let dispersion = 0,
      elements = 0;
    sizes.forEach((n, i) => {
      for (let j = 0; j < n; j++) {
        const k = masks.reduce((a, m) => a + getBit(m[i], j), 0);
        dispersion += (k - STEPS * keep) ** 2 / (STEPS * keep * (1 - keep));
        elements++;
      }
    });
    dispersion /= elements;
    assert.ok(Math.abs(dispersion - 1) < Z * Math.sqrt(2 / elements), `per-element dispersion ${dispersion}`);

    const whole = (s: number, i: number): Run => ({ bits: masks[s][i], lo: 0, n: sizes[i] });
    const chunk = (s: number, i: number, c: number): Run => ({ bits: masks[s][i], lo: c * F_CHUNK, n: F_CHUNK });
    // Pairs are disjoint, so their agreements are independent under the null.
    const acrossSteps: [Run, Run][] = [];
    for (let s = 0; s + 1 < STEPS; s += 2) sizes.forEach((_, i) => acrossSteps.push([whole(s, i), whole(s + 1, i)]));
    const byShape = new Map<string, number[]>();
    model.specs.forEach((spec, i) =>
      byShape.set(spec.shape.join('x'), [...(byShape.get(spec.shape.join('x')) ?? []), i]),
    );
    const acrossTensors: [Run, Run][] = [];
    for (let s = 0; s < STEPS; s++)
      for (const same of byShape.values())
        for (let k = 0; k + 1 < same.length; k += 2) acrossTensors.push([whole(s, same[k]), whole(s, same[k + 1])]);
    const acrossChunks: [Run, Run][] = [];
    for (let s = 0; s < STEPS; s++)
      sizes.forEach((n, i) => {
        for (let c = 0; (c + 2) * F_CHUNK <= n; c += 2) acrossChunks.push([chunk(s, i, c), chunk(s, i, c + 1)]);
      });
    // Whole chunks each thread masked (the partition of DataParallel.start), paired in order.
    const ofThread = partition(sizes, 2).map((segments) =>
      segments.flatMap(({ index, lo, hi }) => {
        const out: [number, number][] = [];
        for (let at = lo; at + F_CHUNK <= hi; at += F_CHUNK) out.push([index, at / F_CHUNK]);
        return out;
      }),
    );
    const acrossThreads: [Run, Run][] = [];
    for (let s = 0; s < STEPS; s++) {
      for (let k = 0; k < Math.min(ofThread[0].length, ofThread[1].length); k++)
        acrossThreads.push([chunk(s, ...ofThread[0][k]), chunk(s, ...ofThread[1][k])]);
    }
    for (const [what, pairs] of Object.entries({ acrossSteps, acrossTensors, acrossChunks, acrossThreads })) {
      assert.ok(pairs.length > 0, what);
      const r = agreementZ(pairs);
      assert.ok(
        Math.abs(r.z) < Z,
        `${what}: agreement ${r.rate.toFixed(5)} over ${r.n} elements against ${AGREE.toFixed(5)} (z = ${r.z.toFixed(2)})`,
      );
    }

    // The bound has the power to see a small correlation: the same step pairs with 2% of one side copied from the other.
    const correlated = acrossSteps.map(([a, b]): [Run, Run] => {
      const copy = Uint8Array.from(b.bits);
      for (let j = 0; j < a.n; j += 50)
        copy[j >> 3] = (copy[j >> 3] & ~(1 << (j & 7))) | (getBit(a.bits, j) << (j & 7));
      return [a, { ...b, bits: copy }];
    });
    assert.ok(agreementZ(correlated).z > Z, 'a 2% correlation is detected');
  });

  before(() => (process.env.CHILDTUNE_DATA = path.dirname(GLUE)));

  test('a run records its masks in Hugging Face order and layout, and a replay trains with them bit for bit; mask-stats counts the masks', async () => {
    const recipe =
      await tinyModelRecipe(`dataset: {task: glue/sst-2, dir: "\${CHILDTUNE_DATA}/glue/SST-2", subsample: {size: 40, seed: 0}}
strategy: {kind: child-tuning-f, reserve_p: 0.3}
training: {epochs: 1, batch_size: 16, log_every: 1, seed: 5}
evaluation: {batch_size: 64}
runtime: {threads: 2}
`);
    const run = async (...set: string[]) => {
      const r = await cli(['run', recipe, ...set.flatMap((s) => ['--set', s]), '--json']);
      assert.equal(r.code, 0, r.err);
      const dir: string = JSON.parse(r.out)[0].dir;
      const read = (f: string) => fs.readFileSync(path.join(dir, f));
      return {
        dir,
        // Everything but the timing.
        metrics: read('metrics.jsonl')
          .toString()
          .trim()
          .split('\n')
          .map((l) => ({ ...JSON.parse(l), examples_per_s: undefined })),
        weights: read('model/model.safetensors'),
        stats: JSON.parse(read('mask-stats.json').toString()),
      };
    };
    const recorded = await run('strategy.f_masks.record=true');
    const meta = JSON.parse(fs.readFileSync(path.join(recorded.dir, 'f-masks.json'), 'utf8'));
    const bin = fs.readFileSync(path.join(recorded.dir, 'f-masks.bin'));
    const steps = 3;
    assert.equal(bin.length, steps * meta.step_bytes);
    assert.deepEqual(
      meta.tensors.map((t: { name: string }) => t.name),
      Object.keys(recorded.stats.per_tensor),
      'every parameter, in Hugging Face order',
    );

    // Layout: a dense weight's recorded bit (o, i) is the decision the run drew for that element (engine layout [in, out]).
    const names = Object.keys(recorded.stats.per_tensor);
    const dense = meta.tensors.find((t: { name: string }) => t.name.endsWith('layer.0.intermediate.dense.weight'));
    const [outDim, inDim] = dense.shape;
    const drawn = new Uint8Array(Math.ceil(dense.elements / 8));
    const step = 2;
    for (let c = 0; c * F_CHUNK < dense.elements; c++) {
      new Rng(streamSeed(streamSeed(5, STREAMS.fMask), step, names.indexOf(dense.name), c)).bernoulliBits(
        drawn,
        c * F_CHUNK,
        Math.min(dense.elements, (c + 1) * F_CHUNK),
        keepThreshold(0.3).threshold,
      );
    }
    const block = bin.subarray((step - 1) * meta.step_bytes + dense.offset);
    for (let o = 0; o < outDim; o += 7)
      for (let i = 0; i < inDim; i += 5)
        assert.equal(getBit(block, o * inDim + i), getBit(drawn, i * outDim + o), `[${o}, ${i}]`);

    // mask-stats.json's kept fractions are the recorded masks' popcounts.
    const keptIn = (masks: Buffer, t: { offset: number; elements: number }) =>
      Array.from({ length: steps }, (_, s) => setBits(masks.subarray(s * meta.step_bytes + t.offset), t.elements));
    for (const t of meta.tensors)
      assert.equal(
        recorded.stats.per_tensor[t.name],
        keptIn(bin, t).reduce((a, b) => a + b) / (steps * t.elements),
        t.name,
      );

    const replayed = await run(`strategy.f_masks.replay=${recorded.dir}`);
    assert.deepEqual(replayed.metrics, recorded.metrics);
    assert.ok(replayed.weights.equals(recorded.weights), 'the same weights, bit for bit');
    assert.deepEqual(replayed.stats, recorded.stats);

    // A recording made elsewhere (here: edited) carries its own step count and checksum, as a finished run writes them.
    const recording = (dir: string, masks: Buffer) => {
      const steps = masks.length / meta.step_bytes;
      const sha256 = createHash('sha256').update(masks).digest('hex');
      fs.writeFileSync(path.join(dir, 'f-masks.json'), JSON.stringify({ ...meta, steps, sha256 }));
      fs.writeFileSync(path.join(dir, 'f-masks.bin'), masks);
    };
    // Replay trains with what the file says: step 2's masks cleared give other weights, and fractions without step 2's kept elements.
    const edited = path.join(path.dirname(recipe), 'edited');
    fs.mkdirSync(edited);
    const cleared = Buffer.from(bin);
    cleared.fill(0, meta.step_bytes, 2 * meta.step_bytes);
    recording(edited, cleared);
    const other = await run(`strategy.f_masks.replay=${edited}`);
    assert.ok(!other.weights.equals(recorded.weights));
    for (const t of meta.tensors) {
      const [first, , third] = keptIn(bin, t);
      assert.equal(other.stats.per_tensor[t.name], (first + third) / (steps * t.elements), t.name);
    }

    // A recording that does not fit the run is refused with a clear error.
    const short = path.join(path.dirname(recipe), 'short');
    fs.mkdirSync(short);
    recording(short, bin.subarray(0, meta.step_bytes));
    const refused = await cli(['run', recipe, '--set', `strategy.f_masks.replay=${short}`]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /holds masks for 1 optimizer steps; this run needs step 2/);
    assert.doesNotMatch(refused.err, /\n\s+at /);
  });
});
