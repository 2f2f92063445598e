import type { Fisher, Recipe } from '../../recipe/types.generated.js';

export type ResolvedFisher = Required<Omit<Fisher, 'max_samples'>> & Pick<Fisher, 'max_samples'>;

/** The fisher block with its defaults (the block itself may be omitted from a child-tuning-d recipe). */
export const resolvedFisher = (r: Recipe): ResolvedFisher => ({
  estimator: 'batch',
  batch_size: 16,
  clip: 1,
  scope: 'encoder',
  seed: 0,
  ...r.strategy.fisher,
});
