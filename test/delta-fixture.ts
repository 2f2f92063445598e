import fs from 'node:fs';
import path from 'node:path';
import type { Batch } from '../src/engine/model.js';
import { REPO } from './helpers.js';

/** The delta-tuning parity fixture (test/fixtures/delta: make_reference.py's model and PyTorch's float64 outputs). */
export const DELTA_DIR = path.join(REPO, 'test', 'fixtures', 'delta');
export const deltaReference = JSON.parse(fs.readFileSync(path.join(DELTA_DIR, 'reference.json'), 'utf8'));

/** The fixture's batch as the engine takes it. */
export function deltaBatch(): Batch {
  const b = deltaReference.batch;
  return {
    batch: b.input_ids.length,
    seq: b.input_ids[0].length,
    inputIds: Int32Array.from(b.input_ids.flat()),
    tokenTypeIds: Int32Array.from(b.token_type_ids.flat()),
    attentionMask: Float32Array.from(b.attention_mask.flat()),
    labels: Float32Array.from(b.labels),
  };
}
