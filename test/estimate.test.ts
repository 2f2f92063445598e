import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/engine/backend.js';
import { batchOf } from '../src/engine/batch.js';
import { activationBytes, forwardBytes, HEAP_HEADROOM, rowsPerPass } from '../src/engine/memory.js';
import { EncoderClassifier } from '../src/engine/model.js';
import { overDevice } from '../src/plan/budget.js';
import { estimateDeviceMemory, estimateMemory } from '../src/plan/estimate.js';
import type { Stage } from '../src/plan/stages.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { initialValue } from '../src/engine/checkpoint.js';
import { Rng } from '../src/engine/rng.js';
import { bertConfig } from './helpers.js';

const recipe = (evaluation?: { batch_size: number }) =>
  ({
    strategy: { kind: 'child-tuning-d', reserve_p: 0.3 },
    training: { batch_size: 16 },
    model: { max_seq_length: 128 },
    runtime: { threads: 2 },
    evaluation,
  }) as unknown as Recipe;

describe('memory estimate', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  test('the train stage counts the scratch tensor the streamed save writes through; the fisher stage saves nothing', () => {
    const large = bertConfig(24, 1024, 16);
    assert.equal(estimateMemory(large, recipe(), 2, 'train').save, 1024 * 4096 * 4);
    assert.equal(estimateMemory(large, recipe(), 2, 'fisher').save, 0);
  });

  test("R3F's step holds two passes' activations (clean and noisy); at lambda 0 one, as vanilla", () => {
    const base = bertConfig(12, 768, 12);
    const withStrategy = (strategy: object) =>
      estimateMemory(base, { ...recipe(), strategy } as unknown as Recipe, 2, 'train').activations;
    const vanilla = withStrategy({ kind: 'vanilla' });
    assert.equal(withStrategy({ kind: 'r3f', lambda: 1, noise: 'uniform', sigma: 1e-5 }), 2 * vanilla);
    assert.equal(withStrategy({ kind: 'r3f', lambda: 0, noise: 'uniform', sigma: 1e-5 }), vanilla);
  });

  test('the fisher stage counts the accumulator and the copy the child network is selected in (in place)', () => {
    const large = bertConfig(24, 1024, 16);
    const encoder = 24 * (4 * (1024 * 1024 + 1024) + 2 * 1024 + 1024 * 4096 + 4096 + 4096 * 1024 + 1024 + 2 * 1024);
    assert.equal(estimateMemory(large, recipe(), 2, 'fisher').fisher, 2 * encoder * 4);
    assert.equal(estimateMemory(large, recipe(), 2, 'train').fisher, 0);
  });

  test("evaluation's forward passes count where they hold more than training's", () => {
    const small = bertConfig(4, 512, 8);
    const withEval = estimateMemory(small, recipe({ batch_size: 64 }), 2, 'train');
    assert.equal(withEval.activations, 2 * forwardBytes(small, 32, 128));
    assert.ok(withEval.activations > 2 * activationBytes(small, 8, 128));
    assert.equal(estimateMemory(small, recipe(), 2, 'train').activations, 2 * activationBytes(small, 8, 128));
    // BERT-large evaluates in passes no larger than training's (the heap's limit), which then hold more.
    const large = bertConfig(24, 1024, 16);
    assert.ok(rowsPerPass(large, 2, 128) < 8);
    assert.equal(
      estimateMemory(large, recipe({ batch_size: 64 }), 2, 'train').activations,
      estimateMemory(large, recipe(), 2, 'train').activations,
    );
  });

  test("a forward pass's model matches the tensor bytes tfjs holds at its peak (within 15%)", async () => {
    const config = bertConfig(2, 128, 2);
    const model = new EncoderClassifier(config, 2);
    const rng = new Rng(1);
    model.specs.forEach((s, i) => (model.values[i] = initialValue(s, rng)));
    const seq = 128;
    const rows = 8;
    const b = batchOf(
      Array.from({ length: rows }, () => ({
        inputIds: Array.from({ length: seq }, () => 1 + rng.int(30000)),
        tokenTypeIds: new Array(seq).fill(0),
      })),
      seq,
    );
    model.predict(b);
    const weights = tf.memory().numBytes;
    const peak = (await tf.profile(() => void model.predict(b))).peakBytes - weights;
    const modelled = forwardBytes(config, rows, seq) / HEAP_HEADROOM;
    assert.ok(Math.abs(modelled / peak - 1) < 0.15, `modelled ${modelled} bytes, tfjs peak ${peak}`);
    model.dispose();
  });

  test('on a GPU, BERT-large with batch 16 x 128 fits a 24 GB card, and its largest tensor one default storage binding', () => {
    const large = bertConfig(24, 1024, 16);
    const params = new EncoderClassifier(large, 2).specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    for (const stage of ['train', 'fisher'] as const) {
      const d = estimateDeviceMemory(large, recipe(), 2, stage);
      assert.equal(d.weights, 4 * params);
      assert.equal(d.adam, stage === 'train' ? 8 * params : 0);
      assert.ok(d.total < 24e9, `${stage}: ${d.total}`);
      // WebGPU's default maxStorageBufferBindingSize, 128 MiB: the word embeddings (125 MB) are the largest.
      assert.ok(d.largest_buffer <= 128 * 2 ** 20, `${stage}: ${d.largest_buffer}`);
    }
  });

  test('a stage whose largest tensor exceeds what the adapter binds is refused by name, with both sizes', () => {
    const large = bertConfig(24, 1024, 16);
    const stage = { kind: 'train', device: estimateDeviceMemory(large, recipe(), 2, 'train') } as unknown as Stage;
    assert.equal(overDevice(stage, { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30 }), undefined);
    assert.match(
      overDevice(stage, { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 64 * 2 ** 20 })!,
      /^the train stage's largest tensor needs 119\.2 MiB in one GPU buffer, but this adapter binds at most 64\.0 MiB$/,
    );
  });
});
