import { Activation, type ActivationKind } from '../../engine/modules/activation.js';
import { Bottleneck } from '../../engine/modules/bottleneck.js';
import { Dense } from '../../engine/modules/dense.js';
import { defineModifier, type Insertion, type ModelEditor, type SublayerKind } from '../../engine/modules/modifier.js';
import type { ParamInit } from '../../engine/modules/param.js';
import { inHead, type Head } from '../head.js';

export type Placement = 'houlsby' | 'pfeiffer' | 'parallel' | 'scaled-parallel';
/** AdapterHub's init_weights. */
export type AdapterInit = 'bert' | 'mam_adapter' | 'houlsby';

/** The adapter modifier's plain data: every default already resolved (adapterSettings). */
export interface AdapterSettings {
  placement: Placement;
  /** The bottleneck size, or null for hidden_size / reductionFactor. */
  bottleneck: number | null;
  reductionFactor: number;
  nonlinearity: ActivationKind;
  /** The constant factor on the adapter's output; 'learned': a trainable scalar from 1 (scaled-parallel). */
  scaling: number | 'learned';
  init: AdapterInit;
  /** A sequential adapter reads the sub-layer's LayerNorm of its output plus the residual (AdapterHub's name). */
  originalLnBefore: boolean;
  trainLayerNorms: boolean;
  head: Head;
}

/** Where a placement puts adapters (AdapterHub's mh_adapter and output_adapter): the sub-layers, and whether parallel. */
const SITES: Record<Placement, { sublayers: SublayerKind[]; parallel: boolean }> = {
  houlsby: { sublayers: ['attention', 'feed-forward'], parallel: false },
  pfeiffer: { sublayers: ['feed-forward'], parallel: false },
  parallel: { sublayers: ['feed-forward'], parallel: true },
  'scaled-parallel': { sublayers: ['feed-forward'], parallel: true },
};

export const isParallel = (p: Placement) => SITES[p].parallel;
export const adapterSublayers = (p: Placement) => SITES[p].sublayers;

/** AdapterHub's down_sample: int(hidden_size // reduction_factor), at least 1. */
const bottleneckSize = (s: AdapterSettings, hidden: number) =>
  s.bottleneck ?? Math.max(1, Math.floor(hidden / s.reductionFactor));

/** The names an adapter's parameters get: adapter.layer.<l>.<attention|output>.<down|up>.<weight|bias>, .scaling. */
const siteName = (layer: number, sublayer: SublayerKind) =>
  `adapter.layer.${layer}.${sublayer === 'attention' ? 'attention' : 'output'}`;

/**
 * Each init_weights of AdapterHub's Adapter: bert (both projections N(0, 0.02), biases zero: init_bert_weights),
 * mam_adapter (down kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), everything else zero) and
 * houlsby (both projections N(0, 0.01) truncated to ±0.02, biases zero).
 */
function inits(init: AdapterInit, hidden: number): { down: ParamInit; up: ParamInit } {
  switch (init) {
    case 'bert':
      return { down: { normal: 0.02 }, up: { normal: 0.02 } };
    case 'mam_adapter':
      return { down: { uniform: 1 / Math.sqrt(hidden) }, up: 'zeros' };
    case 'houlsby':
      return { down: { normal: 0.01, truncate: 0.02 }, up: { normal: 0.01, truncate: 0.02 } };
  }
}

function buildAdapter(editor: ModelEditor, s: AdapterSettings, layer: number, sublayer: SublayerKind, at: Insertion) {
  const hidden = editor.config.hiddenSize;
  const width = bottleneckSize(s, hidden);
  const name = siteName(layer, sublayer);
  const dense = (part: 'down' | 'up', inDim: number, outDim: number, weight: ParamInit) =>
    new Dense(
      editor.addParam({
        name: `${name}.${part}.weight`,
        shape: [outDim, inDim],
        transposed: true,
        decay: true,
        init: weight,
        layer,
      }),
      editor.addParam({ name: `${name}.${part}.bias`, shape: [outDim], init: 'zeros', layer }),
    );
  const init = inits(s.init, hidden);
  const down = dense('down', hidden, width, init.down);
  const up = dense('up', width, hidden, init.up);
  const scale =
    s.scaling === 'learned'
      ? editor.addParam({ name: `${name}.scaling`, shape: [1], init: 'ones', decay: true, layer })
      : s.scaling;
  // Only an adapter on the dropped output (Houlsby's place) adds its input back itself; the sub-layer adds the rest.
  return new Bottleneck(down, new Activation(s.nonlinearity), up, at === 'after', scale);
}

/**
 * Bottleneck adapters in every encoder layer at the placement's sites, as AdapterHub's BnConfig applies them with
 * residual_before_ln: a sequential one on the dropped sub-layer output h (or, with originalLnBefore, on LN(h + x)),
 * h added to its output, then the sub-layer's LN(. + x); a parallel one on the sub-layer input x, LN(h + s up(..) +
 * x). The model's own parameters freeze but the head's (`head`; and the encoder layers' LayerNorms with
 * trainLayerNorms); the adapters' own train.
 */
export const adapterModifier = defineModifier<AdapterSettings>('adapter', (editor, s) => {
  const trainsHead = inHead(s.head);
  editor.setTrainable(
    (spec) => trainsHead(spec) || (s.trainLayerNorms && spec.group === 'encoder' && spec.name.includes('.LayerNorm.')),
  );
  const { sublayers, parallel } = SITES[s.placement];
  const at: Insertion = parallel ? 'parallel' : s.originalLnBefore ? 'after-norm' : 'after';
  for (const sublayer of sublayers)
    editor.insert({ sublayer, placement: at }, (layer) => buildAdapter(editor, s, layer, sublayer, at));
});
