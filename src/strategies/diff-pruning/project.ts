import type { TrainingState } from '../definition.js';
import { DELTA, LOG_ALPHA, TENSOR_LOG_ALPHA } from './gated-diff.js';
import { testGates } from './hard-concrete.js';

/**
 * The log_alpha a projected gate is set to: beyond the largest logistic noise the clamped uniforms give (log(U_MAX
 * / (1 - U_MAX)), about 9.21) by more than the stretch needs (log 5 for z = 1, 0 for z = 0), so a kept entry's gate
 * is exactly 1 and a pruned one's exactly 0 at every draw, with dz/dlog_alpha 0: a fixed mask.
 */
export const OPEN = 20;
export const CLOSED = -20;

/** The gated tensors by their difference's index: the difference and both gates' indices. */
export function gatedTensors(specs: TrainingState['specs']) {
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  return specs.flatMap((spec, delta) => {
    if (!spec.name.endsWith(DELTA)) return [];
    const base = spec.name.slice(0, -DELTA.length);
    return [
      {
        delta,
        logAlpha: byName.get(`${base}${LOG_ALPHA}`)!,
        tensorLogAlpha: byName.get(`${base}${TENSOR_LOG_ALPHA}`)!,
      },
    ];
  });
}

/**
 * The reference's second stage (dguo98/DiffPruning run_glue_mag.py) and the start of its third
 * (run_glue_fixmask_finetune.py): the merged difference z_t z delta of every gated tensor (test-time gates) is
 * projected by magnitude, one threshold over all of them, to the largest `target` share of the gated entries
 * (entries strictly above the (k + 1)-th largest magnitude, k = floor(target x entries): at most k, as the
 * reference's share at most the target); each kept entry's gate is fixed open and every other one closed, each
 * tensor's gate open, so the model goes on as w0 + mask delta with the raw difference (the reference's
 * `--finetune 1`); every tensor's Adam moments start again from zero (its fresh optimizer). Returns the kept count.
 */
export function projectDiffs({ specs, values, m, v }: TrainingState, target: number) {
  const gated = gatedTensors(specs);
  const magnitudes = gated.map(({ delta, logAlpha, tensorLogAlpha }) => {
    const z = testGates(values[logAlpha]);
    const [zt] = testGates(values[tensorLogAlpha]);
    return Float32Array.from(values[delta], (d, j) => Math.abs(zt * z[j] * d));
  });
  const entries = magnitudes.reduce((a, x) => a + x.length, 0);
  const k = Math.floor(target * entries);
  const sorted = new Float32Array(entries);
  let at = 0;
  for (const x of magnitudes) {
    sorted.set(x, at);
    at += x.length;
  }
  sorted.sort();
  // Kept: magnitude above the (k + 1)-th largest (every nonzero one when k covers them all).
  const threshold = k >= entries ? 0 : sorted[entries - k - 1];
  let kept = 0;
  gated.forEach(({ logAlpha, tensorLogAlpha }, t) => {
    const la = values[logAlpha];
    magnitudes[t].forEach((x, j) => {
      const keep = x > threshold;
      la[j] = keep ? OPEN : CLOSED;
      if (keep) kept++;
    });
    values[tensorLogAlpha].fill(OPEN);
  });
  m.forEach((x) => x.fill(0));
  v.forEach((x) => x.fill(0));
  return { kept, entries, threshold };
}
