import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { diagnostic } from '../../recipe/diagnostics.js';
import { defineStrategy, kindReport, type OptionsOf, type SaveInput, type StrategySave } from '../definition.js';
import { saveApart } from '../save-apart.js';
import { adapterModifier, bottleneckSize, type AdapterSettings } from './modifier.js';

type AdapterOptions = OptionsOf<'adapter'>;

/** The modifier's settings: the recipe's options with the placement's defaults (AdapterHub's, He et al.'s s = 4). */
export function adapterSettings(o: AdapterOptions): AdapterSettings {
  const placement = o.placement ?? 'houlsby';
  const nonlinearity = o.nonlinearity ?? (placement === 'houlsby' ? 'swish' : 'relu');
  return {
    placement,
    bottleneck: o.bottleneck ?? null,
    reductionFactor: o.reduction_factor ?? 16,
    nonlinearity: nonlinearity === 'silu' ? 'swish' : nonlinearity,
    scaling: o.scaling ?? 4,
    init: o.init ?? 'near-identity',
    initStd: o.init_std ?? 0.01,
    trainLayerNorms: o.train_layer_norms ?? placement === 'houlsby',
    head: o.head ?? 'classifier',
  };
}

/**
 * Saves the adapters apart (strategy.safetensors and strategy.json: the placement, bottleneck, nonlinearity and
 * scaling that rebuild them); model.safetensors keeps the pretrained weights with the trained head and LayerNorms.
 */
export function saveAdapter(input: SaveInput<'adapter'>): StrategySave {
  const s = adapterSettings(input.options);
  return saveApart(input, 'adapter', {
    placement: s.placement,
    bottleneck: bottleneckSize(s, input.config.hiddenSize),
    nonlinearity: s.nonlinearity,
    scaling: s.placement === 'scaled-parallel' ? s.scaling : 1,
  });
}

/** Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2021, He et al. 2022): the pretrained model frozen. */
export const adapterDefinition = defineStrategy({
  kind: 'adapter',
  check: (o) =>
    o.scaling !== undefined && o.placement !== 'scaled-parallel'
      ? [
          diagnostic(
            'CT0303',
            `scaling applies to the scaled-parallel placement only, not ${o.placement}`,
            '/strategy/scaling',
            {
              suggestion: 'Remove scaling, or set placement: scaled-parallel.',
            },
          ),
        ]
      : [],
  modifiers: (o) => [adapterModifier(adapterSettings(o))],
  modifierKinds: [adapterModifier as ModifierFactory],
  prepare: () => ({}),
  hooks: () => ({ kind: 'adapter' }),
  report: kindReport,
  save: saveAdapter,
});
