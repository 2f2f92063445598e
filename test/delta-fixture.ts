import fs from 'node:fs';
import path from 'node:path';
import type { Batch, EncoderClassifier } from '../src/engine/model.js';
import { adamwRange, adamwStep } from '../src/engine/optimizer.js';
import { Rng } from '../src/engine/rng.js';
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

/**
 * `steps` AdamW steps (lr 0.05, decay 0.01 where the tensor decays) on the fixture's batch, dropout drawn from
 * Rng(seed + step), in place: enough for every trainable tensor to move.
 */
export function trainOnDeltaBatch(model: EncoderClassifier, steps: number, seed: number) {
  const settings = { lr: 0.05, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 };
  const m = model.values.map((v) => new Float32Array(v.length));
  const v = model.values.map((x) => new Float32Array(x.length));
  for (let s = 1; s <= steps; s++) {
    const grads = model.values.map((x) => new Float32Array(x.length));
    model.step(deltaBatch(), grads, new Rng(seed + s));
    const adam = adamwStep(settings, s, settings.lr);
    model.specs.forEach((spec, i) => {
      if (spec.trainable)
        adamwRange(
          model.values[i],
          grads[i],
          m[i],
          v[i],
          0,
          grads[i].length,
          spec.decay ? adam : { ...adam, decay: 0 },
        );
    });
    model.markDirty();
  }
}
