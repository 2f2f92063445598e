import type { ActivationKind } from '../../engine/modules/activation.js';
import type { OptionsOf } from '../definition.js';
import { isParallel, type AdapterInit, type AdapterSettings, type Placement } from './modifier.js';

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
