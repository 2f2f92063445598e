import fs from 'node:fs';
import path from 'node:path';
import { internalShape, sizeOf, type ParamSpec } from '../engine/params.js';
import { getBit, popcount, setBit } from '../engine/bitset.js';
import type { RunDir } from './rundir.js';

/**
 * `child-mask.bin`: Child-Tuning-D's child network, one bit per in-scope parameter, for comparing child
 * networks across runs and tools. Tensors follow one another in the model's parameter order; each is a bitset
 * of its elements in row-major order of its checkpoint shape (Hugging Face's [out, in] for dense weights),
 * element j at bit j % 8 of byte j / 8, padded to a whole byte. `child-mask.json` names the layout, its
 * version, and each tensor's name, shape, byte offset and kept count.
 */
export const CHILD_MASK_LAYOUT = 'checkpoint-row-major';
export const CHILD_MASK_VERSION = 2;

export interface ChildMaskIndex {
  format: 'childtune-child-mask';
  version: typeof CHILD_MASK_VERSION;
  layout: typeof CHILD_MASK_LAYOUT;
  bit_order: 'lsb-first';
  tensors: { name: string; shape: number[]; offset: number; bytes: number; kept: number }[];
}

/** Engine bitset ([in, out] for dense weights) to checkpoint order. */
function toCheckpointOrder(spec: ParamSpec, bits: Uint8Array): Uint8Array {
  if (!spec.transposed) return bits;
  const [rows, cols] = internalShape(spec);
  const out = new Uint8Array(bits.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) if (getBit(bits, r * cols + c)) setBit(out, c * rows + r);
  return out;
}

export function writeChildMask(run: RunDir, specs: readonly ParamSpec[], masks: readonly (Uint8Array | undefined)[]) {
  const parts: Uint8Array[] = [];
  const tensors: ChildMaskIndex['tensors'] = [];
  let offset = 0;
  specs.forEach((spec, i) => {
    const m = masks[i];
    if (!m) return;
    const bits = toCheckpointOrder(spec, m);
    tensors.push({
      name: spec.name,
      shape: spec.shape,
      offset,
      bytes: bits.length,
      kept: popcount(bits, sizeOf(spec)),
    });
    parts.push(bits);
    offset += bits.length;
  });
  const all = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  run.writeBytes('child-mask.bin', all);
  const index: ChildMaskIndex = {
    format: 'childtune-child-mask',
    version: CHILD_MASK_VERSION,
    layout: CHILD_MASK_LAYOUT,
    bit_order: 'lsb-first',
    tensors,
  };
  run.writeJson('child-mask.json', index);
}

/** A run's child network with its index, or undefined when it has none in the current layout (older runs). */
export function readChildMask(dir: string): { bits: Uint8Array; index: ChildMaskIndex } | undefined {
  const bin = path.join(dir, 'child-mask.bin');
  const json = path.join(dir, 'child-mask.json');
  if (!fs.existsSync(bin) || !fs.existsSync(json)) return undefined;
  const index = JSON.parse(fs.readFileSync(json, 'utf8')) as ChildMaskIndex;
  if (
    index.format !== 'childtune-child-mask' ||
    index.version !== CHILD_MASK_VERSION ||
    index.layout !== CHILD_MASK_LAYOUT
  )
    return undefined;
  const bits = new Uint8Array(fs.readFileSync(bin));
  const expected = index.tensors.reduce((a, t) => a + t.bytes, 0);
  return bits.length === expected ? { bits, index } : undefined;
}
