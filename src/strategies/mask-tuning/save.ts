import type { TrainedValues } from '../diff-pruning/save.js';
import { SCORES } from './masked-dense.js';

/** The model's own weights with each binary mask applied (a plain model), and the share of masked elements kept. */
export function applyMasks({ specs, values }: TrainedValues, threshold: number) {
  const weights = [...values];
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  let kept = 0;
  let total = 0;
  specs.forEach((spec, i) => {
    if (!spec.name.endsWith(SCORES)) return;
    const w = byName.get(`${spec.name.slice(0, -SCORES.length)}.weight`)!;
    const scores = values[i];
    const masked = Float32Array.from(values[w]);
    for (let j = 0; j < masked.length; j++) {
      if (scores[j] > threshold) kept++;
      else masked[j] = 0;
    }
    total += masked.length;
    weights[w] = masked;
  });
  return { weights, kept: { kept, total, fraction: total ? kept / total : 1 } };
}

/** The save hook's result: model.safetensors with the masks applied, and the kept share beside it. */
export const maskTuningSave = (input: TrainedValues & { options: { threshold: number } }) => {
  const { weights, kept } = applyMasks(input, input.options.threshold);
  const stats = { kept_parameters: kept.kept, masked_parameters: kept.total, kept_fraction: kept.fraction };
  return { weights, files: { 'mask-tuning.json': `${JSON.stringify(stats, null, 2)}\n` } };
};
