import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { installedBackends, selectBackend, BackendError } from '../src/engine/backend.js';
import { batchOf } from '../src/engine/batch.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import { saveModel } from '../src/engine/save.js';
import { ModelError } from '../src/engine/config.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { encodeSafetensors, parseSafetensors, readSafetensors, SafetensorsError } from '../src/engine/safetensors.js';
import { ByteBpeTokenizer, loadTokenizer, TokenizerError } from '../src/engine/tokenizer.js';
import { AdamW, clipGlobalNorm, FIXTURES, microModel, tmpProject, write } from './helpers.js';

const RANDOM = path.join(FIXTURES, 'bert-tiny-random');
const reference = JSON.parse(fs.readFileSync(path.join(RANDOM, 'reference.json'), 'utf8'));
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

const microBatch = () => {
  const ids = [
    [2, 7, 9, 3, 11, 0],
    [2, 5, 3, 8, 12, 3],
  ];
  const encs = ids.map((r) => ({
    inputIds: r.filter((x, i) => x !== 0 || i === 0),
    tokenTypeIds: r.map((_, i) => (i > 3 ? 1 : 0)),
  }));
  return batchOf(encs, 6, [2, 0]);
};

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`engine on ${backend}`, () => {
    before(async () => {
      await selectBackend(backend);
    });

    test('parity with the PyTorch reference: tokens exact, outputs within 1e-4', () => {
      const tokenizer = loadTokenizer(RANDOM);
      const { model } = loadPretrained(RANDOM, { numLabels: 2, seed: 0 });
      for (const c of reference.cases) {
        const enc = tokenizer.encode(
          c.text_a,
          c.text_b ?? undefined,
          reference.tokenizer_config.max_length,
          reference.tokenizer_config.pad_to,
        );
        assert.deepEqual(enc.tokens, c.tokens);
        assert.deepEqual(enc.inputIds, c.input_ids);
        assert.deepEqual(enc.tokenTypeIds, c.token_type_ids);
        assert.deepEqual(enc.attentionMask, c.attention_mask);
        const out = model.predict(batchOf([enc], enc.inputIds.length), true);
        const H = 128;
        assert.ok(maxDiff(out.hidden!.subarray(0, H), c.last_hidden_state_first_token) < 1e-4);
        let sum = 0;
        enc.attentionMask.forEach((m, t) => {
          if (m) for (let h = 0; h < H; h++) sum += out.hidden![t * H + h];
        });
        assert.ok(
          Math.abs(sum - c.last_hidden_state_sum) < 1e-3 * Math.max(1, Math.abs(c.last_hidden_state_sum)),
          `sum ${sum} vs ${c.last_hidden_state_sum}`,
        );
        assert.ok(maxDiff(out.pooled!, c.pooled_output) < 1e-4);
        assert.ok(maxDiff(out.logits, c.logits) < 1e-4);
      }
      model.dispose();
    });

    for (const family of ['bert', 'roberta', 'electra'] as const) {
      test(`hand-written backward matches finite differences (${family}, dropout on)`, () => {
        const model = microModel({ family, embedding: family === 'electra' ? 6 : 8 });
        const b = microBatch();
        const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
        const lossAt = () =>
          model.step(
            b,
            model.specs.map((s) => new Float32Array(sizeOf(s))),
            new Rng(5),
          ).loss;
        model.step(b, grads, new Rng(5));
        const probe = new Rng(9);
        let checked = 0;
        model.specs.forEach((spec, i) => {
          for (let k = 0; k < 2; k++) {
            // Embedding tables: probe rows the batch uses.
            const j = spec.name.includes('word_embeddings')
              ? 7 * 8 + probe.int(spec.shape[1])
              : probe.int(model.values[i].length);
            const orig = model.values[i][j];
            const h = 1e-2;
            model.values[i][j] = orig + h;
            model.markDirty();
            const up = lossAt();
            model.values[i][j] = orig - h;
            model.markDirty();
            const down = lossAt();
            model.values[i][j] = orig;
            model.markDirty();
            const numeric = (up - down) / (2 * h);
            const analytic = grads[i][j];
            assert.ok(
              Math.abs(numeric - analytic) <= 3e-2 * Math.max(Math.abs(numeric), Math.abs(analytic)) + 2e-4,
              `${spec.name}[${j}]: analytic ${analytic} vs numeric ${numeric}`,
            );
            checked++;
          }
        });
        assert.ok(checked >= 2 * model.specs.length);
        model.dispose();
      });
    }

    test('regression head: MSE gradient matches finite differences', () => {
      const model = microModel({ labels: 1 });
      const b = microBatch();
      b.labels.set([2.5, 0.5]);
      const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
      model.step(b, grads, null);
      const i = model.indexOf('classifier.weight');
      const orig = model.values[i][3];
      const loss = (v: number) => {
        model.values[i][3] = v;
        model.markDirty();
        return model.step(
          b,
          model.specs.map((s) => new Float32Array(sizeOf(s))),
          null,
        ).loss;
      };
      const numeric = (loss(orig + 1e-2) - loss(orig - 1e-2)) / 2e-2;
      loss(orig);
      assert.ok(Math.abs(numeric - grads[i][3]) < 2e-2 * Math.abs(numeric) + 1e-4);
      model.dispose();
    });

    test('200 training steps leave the live tensor count and bytes flat', () => {
      const model = microModel();
      const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
      const opt = new AdamW(model.specs, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-6, weightDecay: 0.01 });
      const b = microBatch();
      const rng = new Rng(1);
      const once = () => {
        model.step(b, grads, rng);
        clipGlobalNorm(grads, 1);
        opt.update(model.values, grads, 1e-3);
        model.markDirty();
      };
      for (let s = 0; s < 5; s++) once();
      const before = tf.memory();
      for (let s = 0; s < 200; s++) once();
      const after = tf.memory();
      assert.equal(after.numTensors, before.numTensors);
      assert.equal(after.numBytes, before.numBytes);
      model.dispose();
    });
  });
}

test('a micro model trains until its loss falls below 0.05, bit-identically twice', async () => {
  await selectBackend('wasm');
  const run = () => {
    const model = microModel({ labels: 3, std: 0.1 });
    const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
    const opt = new AdamW(model.specs, { lr: 3e-3, betas: [0.9, 0.999], eps: 1e-6, weightDecay: 0 });
    const b = microBatch();
    const rng = new Rng(3);
    const losses: number[] = [];
    for (let s = 0; s < 300; s++) {
      losses.push(model.step(b, grads, rng).loss);
      clipGlobalNorm(grads, 1);
      opt.update(model.values, grads, 3e-3);
      model.markDirty();
    }
    model.dispose();
    return losses;
  };
  const a = run();
  assert.ok(a.at(-1)! < 0.05, `final loss ${a.at(-1)}`);
  assert.ok(a[0] > 0.5);
  assert.deepEqual(run(), a);
});

test('every installed backend is exercised; a missing one is a clear error with the npm command', async () => {
  const installed = await installedBackends();
  assert.ok(installed.includes('wasm') && installed.includes('cpu'));
  for (const name of ['tensorflow'] as const) {
    if (installed.includes(name)) continue;
    await assert.rejects(
      selectBackend(name),
      (e: BackendError) =>
        e instanceof BackendError &&
        /not available/.test(e.message) &&
        /npm install @tensorflow\/tfjs-node/.test(e.hint!),
    );
  }
  // tensorflow-gpu is refused whether installed or not: no test runs it (the GPU trains through webgpu).
  await assert.rejects(
    selectBackend('tensorflow-gpu'),
    (e: BackendError) =>
      e instanceof BackendError && /not supported/.test(e.message) && /runtime\.backend: webgpu/.test(e.hint!),
  );
  const auto = await selectBackend('auto');
  assert.equal(auto.name, installed.find((n) => n === 'tensorflow') ?? 'wasm');
});

describe('checkpoints', () => {
  test('a pretraining checkpoint loads with its MLM head ignored and a fresh, seeded classifier', () => {
    const dir = path.join(FIXTURES, 'bert-tiny-glue-mlm');
    const a = loadPretrained(dir, { numLabels: 3, seed: 7 });
    const b = loadPretrained(dir, { numLabels: 3, seed: 7 });
    assert.match(a.notes.join('\n'), /ignored 5 pretraining-head tensors \(cls\.predictions\)/);
    assert.match(a.notes.join('\n'), /fresh classification head \(seed 7\)/);
    const i = a.model.indexOf('classifier.weight');
    assert.deepEqual(a.model.values[i], b.model.values[i]);
  });

  test('save then load round-trips every tensor', () => {
    const { model } = loadPretrained(RANDOM, { numLabels: 2, seed: 0 });
    const dir = path.join(tmpProject(), 'm');
    saveModel(model, dir, { source: RANDOM });
    const again = loadPretrained(dir, { numLabels: 2, seed: 1 });
    assert.deepEqual(again.notes, []);
    model.values.forEach((v, i) => assert.deepEqual(again.model.values[i], v));
  });

  const mutate = (
    edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void,
    configEdit?: (c: Record<string, unknown>) => void,
  ) => {
    const dir = tmpProject();
    const tensors = new Map(
      [...readSafetensors(path.join(RANDOM, 'model.safetensors'))].map(([k, v]) => [
        k,
        { shape: v.shape, data: v.data },
      ]),
    );
    edit(tensors);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors));
    const config = JSON.parse(fs.readFileSync(path.join(RANDOM, 'config.json'), 'utf8'));
    configEdit?.(config);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  };

  test('missing, unexpected and mis-shaped tensors are errors naming the tensor', () => {
    const missing = mutate((t) => t.delete('bert.encoder.layer.1.output.dense.weight'));
    assert.throws(
      () => loadPretrained(missing, { numLabels: 2, seed: 0 }),
      (e: ModelError) => /missing encoder tensor bert\.encoder\.layer\.1\.output\.dense\.weight/.test(e.message),
    );
    const extra = mutate((t) =>
      t.set('bert.encoder.layer.2.output.dense.weight', { shape: [2], data: new Float32Array(2) }),
    );
    assert.throws(
      () => loadPretrained(extra, { numLabels: 2, seed: 0 }),
      /unexpected tensor bert\.encoder\.layer\.2\.output\.dense\.weight/,
    );
    const vocab = mutate(
      () => {},
      (c) => (c.vocab_size = 30000),
    );
    assert.throws(
      () => loadPretrained(vocab, { numLabels: 2, seed: 0 }),
      (e: ModelError) =>
        /word_embeddings\.weight has shape \[30522,128\]/.test(e.message) && /vocabulary/.test(e.hint!),
    );
  });

  test('bad safetensors files: truncated, overlapping, bad dtype, huge shapes', () => {
    const good = fs.readFileSync(path.join(RANDOM, 'model.safetensors'));
    assert.throws(
      () => parseSafetensors(good.subarray(0, good.length - 100)),
      (e: SafetensorsError) => /truncated mid-tensor/.test(e.message),
    );
    assert.throws(() => parseSafetensors(good.subarray(0, 4)), /too short/);
    const withHeader = (h: object) => {
      const json = Buffer.from(JSON.stringify(h));
      const out = Buffer.alloc(8 + json.length + 16);
      out.writeBigUInt64LE(BigInt(json.length));
      json.copy(out, 8);
      return out;
    };
    assert.throws(
      () =>
        parseSafetensors(
          withHeader({
            a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
          }),
        ),
      /overlap/,
    );
    // I64 is read (position_ids buffers); a dtype no BERT-family checkpoint uses is still refused by name.
    assert.throws(
      () => parseSafetensors(withHeader({ a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } })),
      /dtype "F8_E4M3" is not supported/,
    );
    assert.throws(
      () => parseSafetensors(withHeader({ a: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 16] } })),
      /needs/,
    );
    const lying = Buffer.alloc(16);
    lying.writeBigUInt64LE(1n << 40n);
    assert.throws(() => parseSafetensors(lying), /header claims/);
  });
});

describe('tokenizers', () => {
  test('bad vocabulary files are clear errors', () => {
    const dir = tmpProject();
    write(dir, 'vocab.txt', 'hello\nworld\n');
    assert.throws(
      () => loadTokenizer(dir),
      (e: TokenizerError) => /has no \[CLS\] token/.test(e.message),
    );
    assert.throws(() => loadTokenizer(tmpProject()), /no tokenizer found/);
    const bpe = tmpProject();
    write(bpe, 'vocab.json', '{"a": 1,');
    write(bpe, 'merges.txt', '');
    assert.throws(() => loadTokenizer(bpe), /not valid JSON/);
  });

  test('byte-level BPE applies merges by rank and pairs as RoBERTa does', () => {
    const vocab = new Map(
      ['<s>', '<pad>', '</s>', '<unk>', 'l', 'o', 'w', 'lo', 'low', 'Ġ', 'Ġlow', 'e', 'r', 'er'].map((t, i) => [t, i]),
    );
    const tok = new ByteBpeTokenizer(vocab, [
      ['l', 'o'],
      ['lo', 'w'],
      ['Ġ', 'low'],
      ['e', 'r'],
    ]);
    assert.deepEqual(tok.tokenize('low lower'), ['low', 'Ġlow', 'er']);
    const enc = tok.encode('low', 'er', 16);
    assert.deepEqual(enc.tokens, ['<s>', 'low', '</s>', '</s>', 'er', '</s>']);
    assert.ok(enc.tokenTypeIds.every((t) => t === 0));
  });

  test('pairs truncate longest first', () => {
    const tok = loadTokenizer(RANDOM);
    const enc = tok.encode('one two three four five six seven', 'alpha beta', 8);
    assert.deepEqual(enc.tokens, ['[CLS]', 'one', 'two', 'three', '[SEP]', 'alpha', 'beta', '[SEP]']);
  });
});

describe('families and tokenizer files', () => {
  for (const family of ['roberta', 'electra'] as const) {
    test(`${family}: model init writes a checkpoint that loads by Hugging Face names and predicts`, async () => {
      await selectBackend('wasm');
      const { initModelCommand } = await import('../src/engine/model-init.js');
      const dir = path.join(tmpProject(), family);
      initModelCommand({ family, size: 'tiny', vocab: path.join(RANDOM, 'vocab.txt'), labels: 3, seed: 1, out: dir });
      const header = readSafetensors(path.join(dir, 'model.safetensors'));
      assert.ok(
        header.has(`${family}.encoder.layer.1.attention.self.query.weight`) && header.has('classifier.out_proj.weight'),
      );
      const { model, notes } = loadPretrained(dir, { numLabels: 3, seed: 0 });
      assert.deepEqual(notes, []);
      const enc = loadTokenizer(dir).encode('a test', 'pair', 16);
      assert.equal(model.predict(batchOf([enc], enc.inputIds.length)).logits.length, 3);
      model.dispose();
    });
  }

  test('tokenizer.json (WordPiece) tokenizes exactly as the equivalent vocab.txt', () => {
    const dir = tmpProject();
    const vocab = fs
      .readFileSync(path.join(RANDOM, 'vocab.txt'), 'utf8')
      .split('\n')
      .filter((l, i, a) => i < a.length - 1 || l);
    write(
      dir,
      'tokenizer.json',
      JSON.stringify({
        normalizer: { lowercase: true },
        model: {
          type: 'WordPiece',
          continuing_subword_prefix: '##',
          vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
        },
      }),
    );
    const fromJson = loadTokenizer(dir);
    const fromTxt = loadTokenizer(RANDOM);
    for (const c of reference.cases)
      assert.deepEqual(
        fromJson.encode(c.text_a, c.text_b ?? undefined, 32),
        fromTxt.encode(c.text_a, c.text_b ?? undefined, 32),
      );
  });
});
