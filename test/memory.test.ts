import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { batchOf, sliceBatch } from '../src/engine/batch.js';
import { activationBytes, deviceWeightBytes, rowsPerPass } from '../src/engine/memory.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { bertConfig, microModel } from './helpers.js';

before(async () => {
  await selectBackend('wasm');
});

test("BERT-large's shard of 8 x 128 tokens runs in passes that fit the 4 GiB wasm heap; BERT-base's in one", () => {
  const large = bertConfig(24, 1024, 16);
  const rows = rowsPerPass(large, 2, 128);
  assert.ok(rows >= 1 && rows < 8, `large: ${rows} rows per pass`);
  assert.ok(deviceWeightBytes(large, 2) + activationBytes(large, rows, 128) < 4 * 2 ** 30);
  assert.ok(rowsPerPass(bertConfig(12, 768, 12), 2, 128) >= 8);
});

test('a batch taken in two weighted passes gives the gradient and loss of one pass (to float rounding)', () => {
  const model = microModel({ std: 0.2 });
  const rng = new Rng(4);
  const encs = Array.from({ length: 5 }, () => ({
    inputIds: Array.from({ length: 6 }, () => 1 + rng.int(39)),
    tokenTypeIds: [0, 0, 0, 1, 1, 1],
  }));
  const b = batchOf(encs, 6, [0, 2, 1, 1, 0]);
  const fresh = () => model.specs.map((s) => new Float32Array(sizeOf(s)).fill(NaN));
  const whole = fresh();
  const loss = model.step(b, whole, null).loss;
  const split = fresh();
  let passLoss = 0;
  for (const [k, [lo, hi]] of [
    [0, 2],
    [2, 5],
  ].entries()) {
    const pass = { weight: (hi - lo) / 5, accumulate: k > 0 };
    passLoss += pass.weight * model.step(sliceBatch(b, lo, hi), split, null, pass).loss;
  }
  assert.ok(Math.abs(passLoss - loss) < 1e-6, `loss ${passLoss} against ${loss}`);
  whole.forEach((g, i) =>
    g.forEach((x, j) =>
      assert.ok(
        Math.abs(split[i][j] - x) <= 1e-5 * (1 + Math.abs(x)),
        `${model.specs[i].name}[${j}]: ${split[i][j]} against ${x}`,
      ),
    ),
  );
});
