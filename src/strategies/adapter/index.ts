import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { diagnostic } from '../../recipe/diagnostics.js';
import { defineStrategy, kindReport, type OptionsOf, type SaveInput, type StrategySave } from '../definition.js';
import { saveApart } from '../save-apart.js';
import type { ActivationKind } from '../../engine/modules/activation.js';
import {
  adapterModifier,
  bottleneckSize,
  isParallel,
  type AdapterInit,
  type AdapterSettings,
  type Placement,
} from './modifier.js';

type AdapterOptions = OptionsOf<'adapter'>;

/** AdapterHub's defaults per placement (SeqBnConfig, DoubleSeqBnConfig, ParBnConfig, scaled_par_bn). */
const DEFAULTS: Record<Placement, { reductionFactor: number; nonlinearity: ActivationKind; init: AdapterInit }> = {
  houlsby: { reductionFactor: 16, nonlinearity: 'swish', init: 'bert' },
  pfeiffer: { reductionFactor: 16, nonlinearity: 'relu', init: 'bert' },
  parallel: { reductionFactor: 2, nonlinearity: 'relu', init: 'mam_adapter' },
  'scaled-parallel': { reductionFactor: 2, nonlinearity: 'relu', init: 'mam_adapter' },
};

/** The modifier's settings: the recipe's options with AdapterHub's defaults for the placement. */
export function adapterSettings(o: AdapterOptions): AdapterSettings {
  const placement = o.placement ?? 'houlsby';
  const d = DEFAULTS[placement];
  const nonlinearity = o.nonlinearity ?? d.nonlinearity;
  return {
    placement,
    bottleneck: o.bottleneck ?? null,
    reductionFactor: o.reduction_factor ?? d.reductionFactor,
    nonlinearity: nonlinearity === 'silu' ? 'swish' : nonlinearity,
    scaling: placement === 'scaled-parallel' ? 'learned' : (o.scaling ?? (placement === 'parallel' ? 4 : 1)),
    init: o.init ?? d.init,
    originalLnBefore: !isParallel(placement) && (o.original_ln_before ?? placement === 'pfeiffer'),
    trainLayerNorms: o.train_layer_norms ?? false,
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
