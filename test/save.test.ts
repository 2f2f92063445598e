import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { writeAtomic, WriteError } from '../src/engine/files.js';
import { saveModel } from '../src/engine/save.js';
import { parseSafetensors, safetensorsChunks, type TensorToWrite } from '../src/engine/safetensors.js';
import { microModel, tmpProject } from './helpers.js';

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('streamed save', () => {
  // The digests of what saveModel wrote when it built model.safetensors in one buffer (commit c5e7571).
  test('model.safetensors is byte for byte what the whole-file encoder wrote', () => {
    const cases = [
      { model: microModel(), sha: '332079f401272142eb8234040bdf2ea1edede6ad59b02d1f01f7d2ae7dd3570a' },
      {
        model: microModel({ family: 'electra', embedding: 4, labels: 1 }),
        sha: '0d2a3627b8c21bfe21a79ec642bf63d725a8daef1a870ed6ec71580b51660d83',
      },
    ];
    for (const { model, sha } of cases) {
      const dir = path.join(tmpProject(), 'm');
      saveModel(model, dir);
      assert.equal(sha256(path.join(dir, 'model.safetensors')), sha, model.config.family);
    }
  });

  test('no chunk holds more than one tensor, and a tensor made into a reused buffer is read before the next', () => {
    const scratch = new Float32Array(6);
    const eager = new Float32Array([1, 2, 3]);
    const tensors = new Map<string, TensorToWrite>([
      ['b', { shape: [2, 3], data: () => scratch.fill(2) }],
      ['a', { shape: [3], data: eager }],
      ['c', { shape: [2, 2], data: () => scratch.subarray(0, 4).fill(3) }],
    ]);
    const chunks: Uint8Array[] = [];
    for (const chunk of safetensorsChunks(tensors)) chunks.push(Uint8Array.from(chunk)); // consumed in turn, as a file write does
    assert.deepEqual(
      chunks.slice(1).map((c) => c.length),
      [12, 24, 16],
    );
    const parsed = parseSafetensors(Buffer.concat(chunks));
    assert.deepEqual([...parsed.get('a')!.data], [1, 2, 3]);
    assert.deepEqual([...parsed.get('b')!.data], [2, 2, 2, 2, 2, 2]);
    assert.deepEqual([...parsed.get('c')!.data], [3, 3, 3, 3]);
    const view = [...safetensorsChunks(new Map([['a', { shape: [3], data: eager }]]))][1];
    assert.equal(view.buffer, eager.buffer, 'a tensor given as values is written from its own memory');
  });

  test('a write that fails mid-stream leaves the previous file and no temporary', () => {
    const dir = tmpProject();
    const file = path.join(dir, 'model.safetensors');
    fs.writeFileSync(file, 'previous');
    function* failing() {
      yield Buffer.from('half a file');
      throw new Error('tensor missing');
    }
    assert.throws(
      () => writeAtomic(file, failing()),
      (e: unknown) => e instanceof WriteError && /tensor missing/.test(e.message),
    );
    assert.equal(fs.readFileSync(file, 'utf8'), 'previous');
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.includes('.tmp-')),
      [],
    );
  });
});
