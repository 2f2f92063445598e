import type { ParamSpec } from '../../engine/params.js';
import { DELTA, LOG_ALPHA, TENSOR_LOG_ALPHA } from './gated-diff.js';
import { expectedL0, testGates } from './hard-concrete.js';

/** The trained model's tensors, engine layout, by spec index (what the strategy save hook is given). */
export interface TrainedValues {
  specs: readonly ParamSpec[];
  values: readonly Float32Array[];
}

/**
 * The model's own tensors with each difference merged in, w + z_t z delta with both gates at their deterministic
 * test-time values (a plain model), and the kept share: elements whose merged difference is not zero, over all
 * gated ones.
 */
export function mergeDiffs({ specs, values }: TrainedValues) {
  const weights = [...values];
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  let kept = 0;
  let total = 0;
  // The reference's logged gate statistics: log_alpha's mean and the mean probability that a gate is open.
  let logAlphaSum = 0;
  let openSum = 0;
  specs.forEach((spec, i) => {
    if (!spec.name.endsWith(DELTA)) return;
    const name = spec.name.slice(0, -DELTA.length);
    const w = byName.get(name)!;
    const logAlpha = values[byName.get(`${name}${LOG_ALPHA}`)!];
    const z = testGates(logAlpha);
    for (const a of logAlpha) logAlphaSum += a;
    openSum += expectedL0(logAlpha);
    const [zt] = testGates(values[byName.get(`${name}${TENSOR_LOG_ALPHA}`)!]);
    const delta = values[i];
    const merged = Float32Array.from(values[w]);
    for (let j = 0; j < merged.length; j++) {
      const d = zt * z[j] * delta[j];
      merged[j] += d;
      if (d !== 0) kept++;
    }
    total += merged.length;
    weights[w] = merged;
  });
  const gates = { mean_log_alpha: total ? logAlphaSum / total : 0, open_probability: total ? openSum / total : 1 };
  return { weights, kept: { kept, total, fraction: total ? kept / total : 1 }, gates };
}

/** The save hook's result: model.safetensors with the differences merged, and the kept share beside it. */
export const diffPruningSave = (input: TrainedValues) => {
  const { weights, kept, gates } = mergeDiffs(input);
  return {
    weights,
    files: {
      'diff-pruning.json': `${JSON.stringify({ kept_parameters: kept.kept, gated_parameters: kept.total, kept_fraction: kept.fraction, ...gates }, null, 2)}\n`,
    },
  };
};
