import { Activation, type ActivationKind } from '../../engine/modules/activation.js';
import { Bottleneck } from '../../engine/modules/bottleneck.js';
import { Dense } from '../../engine/modules/dense.js';
import { defineModifier, type ModelEditor, type SublayerKind } from '../../engine/modules/modifier.js';
import type { ParamInit } from '../../engine/modules/param.js';
import { inHead, type Head } from '../head.js';

export type Placement = 'houlsby' | 'pfeiffer' | 'parallel' | 'scaled-parallel';

/** The adapter modifier's plain data: every default already resolved (adapterSettings). */
export interface AdapterSettings {
  placement: Placement;
  /** The bottleneck size, or null for hidden_size / reductionFactor. */
  bottleneck: number | null;
  reductionFactor: number;
  nonlinearity: ActivationKind;
  scaling: number;
  init: 'near-identity' | 'identity';
  initStd: number;
  trainLayerNorms: boolean;
  head: Head;
}

/** Where a placement puts adapters: the sub-layers, and whether beside them (parallel) or after them. */
const SITES: Record<Placement, { sublayers: SublayerKind[]; placement: 'after' | 'parallel' }> = {
  houlsby: { sublayers: ['attention', 'feed-forward'], placement: 'after' },
  pfeiffer: { sublayers: ['feed-forward'], placement: 'after' },
  parallel: { sublayers: ['feed-forward'], placement: 'parallel' },
  'scaled-parallel': { sublayers: ['feed-forward'], placement: 'parallel' },
};

export const bottleneckSize = (s: AdapterSettings, hidden: number) =>
  s.bottleneck ?? Math.max(1, Math.floor(hidden / s.reductionFactor));

/** The names an adapter's parameters get: adapter.layer.<l>.<attention|output>.<down|up>.<weight|bias>. */
const siteName = (layer: number, sublayer: SublayerKind) =>
  `adapter.layer.${layer}.${sublayer === 'attention' ? 'attention' : 'output'}`;

function buildAdapter(editor: ModelEditor, s: AdapterSettings, layer: number, sublayer: SublayerKind) {
  const hidden = editor.config.hiddenSize;
  const width = bottleneckSize(s, hidden);
  const name = siteName(layer, sublayer);
  const dense = (part: 'down' | 'up', inDim: number, outDim: number, weight: ParamInit, bias: ParamInit) =>
    new Dense(
      editor.addParam({
        name: `${name}.${part}.weight`,
        shape: [outDim, inDim],
        transposed: true,
        decay: true,
        init: weight,
        layer,
      }),
      editor.addParam({ name: `${name}.${part}.bias`, shape: [outDim], init: bias, layer }),
    );
  // identity: down as a fresh nn.Linear (uniform within 1/sqrt(fan_in)), up zero, so the adapter adds exactly 0.
  const near = s.init === 'near-identity';
  const down = near ? { normal: s.initStd } : { uniform: 1 / Math.sqrt(hidden) };
  const downBias = near ? 'zeros' : { uniform: 1 / Math.sqrt(hidden) };
  const up = near ? { normal: s.initStd } : 'zeros';
  const after = SITES[s.placement].placement === 'after';
  return new Bottleneck(
    dense('down', hidden, width, down, downBias),
    new Activation(s.nonlinearity),
    dense('up', width, hidden, up, 'zeros'),
    after,
    s.placement === 'scaled-parallel' ? s.scaling : 1,
  );
}

/**
 * Bottleneck adapters in every encoder layer at the placement's sites. The model's own parameters freeze but the
 * head's (`head`; and the encoder layers' LayerNorms with trainLayerNorms); the adapters' own train.
 */
export const adapterModifier = defineModifier<AdapterSettings>('adapter', (editor, s) => {
  const trainsHead = inHead(s.head);
  editor.setTrainable(
    (spec) => trainsHead(spec) || (s.trainLayerNorms && spec.group === 'encoder' && spec.name.includes('.LayerNorm.')),
  );
  const { sublayers, placement } = SITES[s.placement];
  for (const sublayer of sublayers)
    editor.insert({ sublayer, placement }, (layer) => buildAdapter(editor, s, layer, sublayer));
});
