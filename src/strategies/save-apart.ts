import path from 'node:path';
import { writeAtomic, writeJsonAtomic } from '../engine/files.js';
import type { EncoderClassifier } from '../engine/model.js';
import { encodeSafetensors, type TensorToWrite } from '../engine/safetensors.js';

/** The file a strategy's own parameters are saved to, beside the model's, and the JSON that says how to use them. */
export const STRATEGY_WEIGHTS = 'strategy.safetensors';
export const STRATEGY_CONFIG = 'strategy.json';

/** A dense weight from the engine's [in, out] to the checkpoint's [out, in]; other tensors as they are. */
export function savedLayout(model: EncoderClassifier, index: number): Float32Array {
  const spec = model.specs[index];
  const v = model.values[index];
  if (!spec.transposed) return v;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(v.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) t[o * inDim + i] = v[i * out + o];
  return t;
}

/** Every parameter the strategy added (source 'strategy'), by name, in the checkpoint's layout. */
export const strategyTensors = (model: EncoderClassifier) =>
  new Map<string, TensorToWrite>(
    model.specs.flatMap((s, i) =>
      s.source === 'strategy' ? [[s.name, { shape: s.shape, data: savedLayout(model, i) }] as const] : [],
    ),
  );

/**
 * Writes a strategy's parameters apart from the model's (they are small): strategy.safetensors (Hugging Face
 * names and layouts, [out, in] dense weights) and strategy.json (the kind and the options that rebuild the module
 * around the saved model), so model.safetensors holds the pretrained weights and the trained head only.
 */
export function saveApart(
  dir: string,
  kind: string,
  options: Record<string, unknown>,
  tensors: Map<string, TensorToWrite>,
) {
  writeAtomic(path.join(dir, STRATEGY_WEIGHTS), encodeSafetensors(tensors));
  writeJsonAtomic(path.join(dir, STRATEGY_CONFIG), { kind, ...options, tensors: [...tensors.keys()].sort() });
}
