import { defineStrategy, kindReport } from '../definition.js';
import { Strategy } from '../strategy.js';

/** Vanilla fine-tuning: every parameter trains on its whole gradient; nothing to prepare. */
export const vanillaDefinition = defineStrategy({
  kind: 'vanilla',
  prepare: () => ({}),
  hooks: () => ({ kind: 'vanilla' }),
  report: kindReport,
});

export const vanilla = () => new Strategy(vanillaDefinition, {});
