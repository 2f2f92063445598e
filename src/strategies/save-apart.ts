import { modifierData, type ModelModifier } from '../engine/modules/modifier.js';
import type { ParamSpec } from '../engine/params.js';
import { STRATEGY_CONFIG, type SavedStrategy, type SavedTensor } from '../engine/saved-strategy.js';
import type { TensorToWrite } from '../engine/safetensors.js';
import type { SaveInput } from './definition.js';

export { STRATEGY_CONFIG };

/** A dense weight from the engine's [in, out] to the checkpoint's [out, in]; other tensors as they are. */
function savedLayout(spec: ParamSpec, v: Float32Array): Float32Array {
  if (!spec.transposed) return v;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(v.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[o * inDim + i] = v[i * out + o];
  return t;
}

/**
 * The parameters `nameOf` names, in the checkpoint's layout under those names (a reference's layout), and where
 * strategy.json finds each of them again: in `file`.
 */
export function namedTensors(
  { specs, values }: Pick<SaveInput, 'specs' | 'values'>,
  file: string,
  nameOf: (spec: ParamSpec) => string | null,
) {
  const tensors = new Map<string, TensorToWrite>();
  const where: Record<string, SavedTensor> = {};
  specs.forEach((spec, i) => {
    const name = nameOf(spec);
    if (name === null) return;
    tensors.set(name, { shape: spec.shape, data: savedLayout(spec, values[i]) });
    where[spec.name] = { file, name };
  });
  return { tensors, where };
}

/**
 * strategy.json (engine/saved-strategy.ts): the strategy's kind, the modifiers that rebuild its modules (as the
 * loader rebuilds them: plain data), the directory of the model's own weights (null: the saved model's own
 * model.safetensors) and where each saved parameter is. Whatever loads the saved model applies it from this file.
 */
export function strategyJson(
  kind: string,
  modifiers: readonly ModelModifier[],
  base: string | null,
  tensors: Record<string, SavedTensor>,
): string {
  const description: SavedStrategy = { kind, modifiers: modifierData(modifiers), base, tensors };
  return JSON.stringify(description, null, 2) + '\n';
}
