import * as tf from '@tensorflow/tfjs-core';
import { denseBackward, denseForward, type Dense } from '../../engine/modules/dense.js';
import type { DenseRole } from '../../engine/modules/families.js';
import { defineModifier, type ModelEditor } from '../../engine/modules/modifier.js';
import type { BackwardContext, ForwardContext, Layer, T2 } from '../../engine/modules/module.js';
import type { Param } from '../../engine/modules/param.js';
import { freezeAllButClassifier } from '../frozen-base.js';
import { DELTA, GatedDiff, LOG_ALPHA, TENSOR_LOG_ALPHA, type GatedCache } from './gated-diff.js';

interface DiffCache {
  x: T2;
  /** The weight the forward used, and both gated tensors' gates. */
  w: tf.Tensor;
  weight: GatedCache;
  bias: GatedCache;
}

/** A dense layer whose weight and bias are each a frozen pretrained value plus a gated difference (gated-diff.ts). */
export class DiffDense implements Layer<DiffCache> {
  constructor(
    readonly dense: Dense,
    readonly weight: GatedDiff,
    readonly bias: GatedDiff,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const w = this.weight.forward(ctx);
    const b = this.bias.forward(ctx);
    return {
      y: denseForward(x, w.value, b.value),
      cache: { x, w: w.value, weight: w.cache, bias: b.cache },
    };
  }

  backward(dy: T2, c: DiffCache, ctx: BackwardContext): T2[] {
    const g = denseBackward(c.x, c.w, dy, { dw: true, db: true });
    this.weight.backward(g.dw!, c.weight, ctx);
    this.bias.backward(g.db!, c.bias, ctx);
    tf.dispose([g.dw!, g.db!]);
    return [g.dx];
  }
}

export interface DiffOptions {
  roles: DenseRole[];
  lambda: number;
  alphaInit: number;
  /** The stream (STREAMS.gateNoise) the gates' noise is drawn from, below the step's seed. */
  stream: number;
}

/** A gated difference for one of the model's tensors: the difference (zeros) and both gates' log_alpha (alphaInit). */
function gate(editor: ModelEditor, base: Param, layer: number | undefined, o: DiffOptions) {
  const { shape, transposed, group } = base.spec;
  // The difference decays as the weight it changes would (the reference's no_decay names); the gates never do.
  const delta = editor.addParam({
    name: `${base.spec.name}${DELTA}`,
    init: 'zeros',
    shape,
    transposed,
    group,
    layer,
    decay: base.spec.decay,
  });
  const logAlpha = editor.addParam({
    name: `${base.spec.name}${LOG_ALPHA}`,
    init: { constant: o.alphaInit },
    shape,
    transposed,
    group,
    layer,
  });
  const tensorLogAlpha = editor.addParam({
    name: `${base.spec.name}${TENSOR_LOG_ALPHA}`,
    init: { constant: o.alphaInit },
    shape: [1],
    group,
    layer,
  });
  return new GatedDiff(base, { delta, logAlpha, tensorLogAlpha }, o.lambda, o.stream);
}

/**
 * Freezes every parameter of the model but the classifier's output layer (trained as usual, as the reference's
 * classifier), and gives the weight and the bias of each dense layer of the chosen roles a gated difference
 * (zeros, so training starts at the pretrained model; log_alpha = alphaInit: gates open).
 */
export const diffPruningModifier = defineModifier<DiffOptions>('diff-pruning', (editor, o) => {
  freezeAllButClassifier(editor);
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      if (inner !== site.dense)
        throw new Error(`diff pruning needs ${site.name} unwrapped (it transforms the weight itself)`);
      return new DiffDense(
        site.dense,
        gate(editor, site.dense.weight, site.layer, o),
        gate(editor, site.dense.bias, site.layer, o),
      );
    },
  );
});
