import { defineStrategy } from '../definition.js';
import { Strategy } from '../strategy.js';

/** Vanilla fine-tuning: every parameter trains on its whole gradient; nothing to prepare. */
export const vanillaDefinition = defineStrategy({
  kind: 'vanilla',
  prepare: () => ({}),
  hooks: () => ({ kind: 'vanilla' }),
  report: () => ({ results: { strategy: 'vanilla', reserve_p: null }, maskStats: { strategy: 'vanilla', reserve_p: 1 } }),
});

export const vanilla = () => new Strategy(vanillaDefinition, {});
