import type { DenseRole } from '../../engine/modules/families.js';
import { defineModifier, type ModelEditor } from '../../engine/modules/modifier.js';
import { trains, type Param } from '../../engine/modules/param.js';
import { freezeAllButClassifier } from '../frozen-base.js';
import { DELTA, GatedDiff, LOG_ALPHA, TENSOR_LOG_ALPHA } from './gated-diff.js';

export interface DiffOptions {
  /** 'all': every tensor of the model but the classifier's output layer (the reference); else these dense roles' weights and biases. */
  roles: DenseRole[] | 'all';
  lambda: number;
  alphaInit: number;
  /** The stream (STREAMS.gateNoise) the gates' noise is drawn from, below the step's seed. */
  stream: number;
}

/** A gated difference for one of the model's tensors: the difference (zeros) and both gates' log_alpha (alphaInit). */
function gate(editor: ModelEditor, base: Param, o: DiffOptions) {
  const { shape, transposed, group, layer } = base.spec;
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
 * classifier), and makes each gated tensor's value, every pass, its frozen pretrained value plus a gated
 * difference (zeros, so training starts at the pretrained model; log_alpha = alphaInit: gates open). Gated: every
 * other tensor of the model, embeddings and LayerNorms too, as the reference (`roles` 'all'), or the weight and bias
 * of the dense layers of the given roles.
 */
export const diffPruningModifier = defineModifier<DiffOptions>('diff-pruning', (editor, o) => {
  freezeAllButClassifier(editor);
  const roles = o.roles;
  const bases =
    roles === 'all'
      ? editor.specs
          .filter((s) => (s.source ?? 'checkpoint') === 'checkpoint' && !trains(s))
          .map((s) => editor.param(s.name))
      : editor.denseSites
          .filter((site) => roles.includes(site.role))
          .flatMap((site) => [site.dense.weight, site.dense.bias]);
  for (const base of bases) editor.deriveParam(base, gate(editor, base, o));
});
