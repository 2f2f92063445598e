import fs from 'node:fs';
import path from 'node:path';
import { loadPretrained, type LoadedModel } from './checkpoint.js';
import { ModelError, type Family } from './config.js';
import type { ModifierData, ModifiersFrom } from './modules/modifier.js';
import { sizeOf, type ParamSpec } from './params.js';
import { readSafetensors, type TensorInfo } from './safetensors.js';

/**
 * Written beside a saved model by a strategy whose parameters are kept apart (adapter, prefix and prompt tuning,
 * LoRA saved as an adapter): what rebuilds its modules, where the model's own weights are, and which saved tensor
 * (in the reference's layout: PEFT's, AdapterHub's) holds each parameter.
 */
export const STRATEGY_CONFIG = 'strategy.json';

/** Where one parameter's values are saved: a tensor of a file (relative to the model directory), [out, in] for dense weights; `columns`: only those columns of a [rows, n] tensor. */
export interface SavedTensor {
  file: string;
  name: string;
  columns?: [number, number];
}

export interface SavedStrategy {
  kind: string;
  /** The modifiers that rebuild the strategy's modules around the model (registry's modifier kinds). */
  modifiers: ModifierData[];
  /** The directory holding the model's own weights: null for the saved model's own directory. */
  base: string | null;
  /** Each parameter the saved files give, by its name in the model; every strategy parameter is among them. */
  tensors: Record<string, SavedTensor>;
}

/** strategy.json of a saved model directory, or null when the model was saved whole. */
export function readSavedStrategy(dir: string): SavedStrategy | null {
  const file = path.join(dir, STRATEGY_CONFIG);
  if (!fs.existsSync(file)) return null;
  let raw: Partial<SavedStrategy>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<SavedStrategy>;
  } catch (e) {
    throw new ModelError(file, `cannot read it (${(e as Error).message})`);
  }
  if (
    typeof raw?.kind !== 'string' ||
    !Array.isArray(raw.modifiers) ||
    !(raw.base === null || typeof raw.base === 'string') ||
    !raw.tensors ||
    typeof raw.tensors !== 'object'
  )
    throw new ModelError(
      file,
      'is not a strategy description childtune wrote (kind, modifiers, base and tensors)',
      'Save the model again with this childtune version.',
    );
  return raw as SavedStrategy;
}

/**
 * Loads a model saved by a run: a whole model as loadPretrained does, or one whose strategy was saved apart with
 * that strategy applied: its modules rebuilt from strategy.json (`modifiersFrom`: the registry's modifier kinds),
 * the model's own weights from its base, then every saved tensor (the strategy's and the trained head's) over them.
 * The outputs are the trained model's.
 */
export function loadSavedModel(
  dir: string,
  options: { family?: Family | 'auto'; numLabels: number; seed: number; modifiersFrom: ModifiersFrom },
): LoadedModel {
  const saved = readSavedStrategy(dir);
  if (!saved) return loadPretrained(dir, options);
  const base = saved.base === null ? dir : path.resolve(dir, saved.base);
  const { model, notes, freshHead } = loadPretrained(base, {
    ...options,
    modifiers: options.modifiersFrom(saved.modifiers),
    savedApart: 'apply',
  });
  const files = new Map<string, Map<string, TensorInfo>>();
  const read = (file: string) => {
    if (!files.has(file)) files.set(file, readSafetensors(path.join(dir, file)));
    return files.get(file)!;
  };
  const given = new Set<string>();
  for (const [name, at] of Object.entries(saved.tensors)) {
    const i = model.indexOf(name);
    const t = read(at.file).get(at.name);
    if (!t)
      throw new ModelError(
        path.join(dir, at.file),
        `has no tensor ${at.name} (${STRATEGY_CONFIG} reads ${name} there)`,
      );
    model.values[i] = engineValues(model.specs[i], t, at, path.join(dir, at.file));
    given.add(name);
  }
  const missing = model.specs.filter((s) => s.source === 'strategy' && !given.has(s.name));
  if (missing.length)
    throw new ModelError(
      path.join(dir, STRATEGY_CONFIG),
      `names no saved tensor for ${missing.map((s) => s.name).join(', ')}`,
    );
  model.markDirty();
  const fromFiles = [...files.keys()].join(', ');
  return {
    model,
    // A head tensor the saved files give is trained, whatever the base lacked.
    freshHead: freshHead.filter((name) => !given.has(name)),
    // The saved head replaces the fresh one loadPretrained reports for a base without it.
    notes: [
      ...notes.filter((n) => !n.startsWith('initialised a fresh classification head')),
      `applied the ${saved.kind} modules saved in ${fromFiles}${saved.base === null ? '' : ` over ${base}`}`,
    ],
  };
}

/** A saved tensor (or its columns) in the engine's layout for `spec`, its shape checked. */
function engineValues(spec: ParamSpec, t: TensorInfo, at: SavedTensor, file: string): Float32Array {
  const [rows, width] = [t.shape[0], t.shape.slice(1).reduce((a, b) => a * b, 1)];
  let data = t.data;
  let shape = t.shape;
  if (at.columns) {
    const [from, to] = at.columns;
    if (t.shape.length !== 2 || to > width || from < 0 || from >= to)
      throw new ModelError(file, `${at.name} [${t.shape}] has no columns ${from} to ${to}`);
    data = new Float32Array(rows * (to - from));
    for (let r = 0; r < rows; r++) data.set(t.data.subarray(r * width + from, r * width + to), r * (to - from));
    shape = [rows, to - from];
  }
  if (shape.length !== spec.shape.length || shape.some((d, k) => d !== spec.shape[k]) || data.length !== sizeOf(spec))
    throw new ModelError(
      file,
      `${at.name}${at.columns ? ` (columns ${at.columns})` : ''} has shape [${shape}]; ${spec.name} needs [${spec.shape}]`,
    );
  if (!spec.transposed) return Float32Array.from(data);
  const [out, inDim] = spec.shape;
  const v = new Float32Array(data.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) v[i * out + o] = data[o * inDim + i];
  return v;
}
