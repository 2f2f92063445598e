import type { ParamSpec } from '../engine/params.js';
import { encodeSafetensors, type TensorToWrite } from '../engine/safetensors.js';
import type { SaveInput, StrategySave } from './definition.js';

/** The file a strategy's own parameters are saved to, beside the model's, and the JSON that says how to use them. */
export const STRATEGY_WEIGHTS = 'strategy.safetensors';
export const STRATEGY_CONFIG = 'strategy.json';

/** A dense weight from the engine's [in, out] to the checkpoint's [out, in]; other tensors as they are. */
export function savedLayout(spec: ParamSpec, v: Float32Array): Float32Array {
  if (!spec.transposed) return v;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(v.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[o * inDim + i] = v[i * out + o];
  return t;
}

/** Every parameter the strategy added (source 'strategy'), by name, in the checkpoint's layout. */
export const strategyTensors = ({ specs, values }: Pick<SaveInput, 'specs' | 'values'>) =>
  new Map<string, TensorToWrite>(
    specs.flatMap((s, i) =>
      s.source === 'strategy' ? [[s.name, { shape: s.shape, data: savedLayout(s, values[i]) }] as const] : [],
    ),
  );

/**
 * A strategy's parameters saved apart from the model's (they are small): strategy.safetensors (Hugging Face
 * names and layouts, [out, in] dense weights) and strategy.json (the kind and the options that rebuild the module
 * around the saved model), so model.safetensors holds the pretrained weights and what trained of them (the head).
 */
export function saveApart(
  input: Pick<SaveInput, 'specs' | 'values'>,
  kind: string,
  options: Record<string, unknown>,
  tensors = strategyTensors(input),
): StrategySave {
  return {
    weights: input.values,
    files: {
      [STRATEGY_WEIGHTS]: encodeSafetensors(tensors),
      [STRATEGY_CONFIG]: JSON.stringify({ kind, ...options, tensors: [...tensors.keys()].sort() }, null, 2) + '\n',
    },
  };
}
