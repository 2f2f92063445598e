import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { diagnostic } from '../../recipe/diagnostics.js';
import { defineStrategy, kindReport } from '../definition.js';
import { adapterModifier, isParallel } from './modifier.js';
import { saveAdapter } from './save.js';
import { adapterSettings } from './settings.js';

/** Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2021, He et al. 2022): the pretrained model frozen. */
export const adapterDefinition = defineStrategy({
  kind: 'adapter',
  check: (o) => {
    const placement = o.placement ?? 'houlsby';
    const misplaced = (option: string, why: string, suggestion: string) =>
      diagnostic('CT0303', `${option} ${why}, not ${placement}`, `/strategy/${option}`, { suggestion });
    return [
      ...(o.scaling !== undefined && placement === 'scaled-parallel'
        ? [
            misplaced(
              'scaling',
              'is a constant for houlsby, pfeiffer and parallel; scaled-parallel learns it',
              'Remove scaling, or set placement: parallel.',
            ),
          ]
        : []),
      ...(o.original_ln_before !== undefined && isParallel(placement)
        ? [
            misplaced(
              'original_ln_before',
              'applies to the sequential placements (houlsby, pfeiffer)',
              'Remove original_ln_before.',
            ),
          ]
        : []),
    ];
  },
  modifiers: (o) => [adapterModifier(adapterSettings(o))],
  modifierKinds: [adapterModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'adapter' }),
  report: kindReport,
  save: saveAdapter,
});
