import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ParamSpec } from '../engine/params.js';
import { keepThreshold } from '../engine/rng.js';
import type { Recipe } from '../recipe/types.generated.js';
import { bitsetBytes } from '../engine/bitset.js';
import type { PreparedF } from '../strategies/child-tuning-f/index.js';
import type { FMaskLog, Strategy } from '../strategies/strategy.js';
import { RunError } from './errors.js';
import type { RunDir } from './rundir.js';

/**
 * Child-Tuning-F's masks on disk (strategy.f_masks), so another implementation can train with exactly the masks
 * a run drew, and childtune can replay them. f-masks.bin holds one block of step_bytes per optimizer update, in
 * order; a block holds, for every in-scope tensor in Hugging Face parameter order, the bitset of its keep
 * decisions in Hugging Face layout (dense weights [out, in], row-major): element j is bit j & 7 of byte j >> 3,
 * each tensor padded to whole bytes. f-masks.json describes the blocks and the scale kept elements were
 * multiplied by.
 */
export const F_MASKS_FORMAT = 'childtune-f-masks/1';
const BIN = 'f-masks.bin';
const META = 'f-masks.json';

interface TensorEntry {
  name: string;
  shape: number[];
  elements: number;
  /** Byte offset of this tensor's bitset within a step's block. */
  offset: number;
  bytes: number;
}

interface FMasksMeta {
  format: string;
  reserve_p: number;
  /** Kept elements were multiplied by `scale`: reserve_p at 16-bit resolution is threshold / 65536. */
  threshold: number;
  scale: number;
  step_bytes: number;
  tensors: TensorEntry[];
  /** Set when the recording run finished: optimizer steps recorded and the sha256 of f-masks.bin. */
  steps?: number;
  sha256?: string;
}

/** sha256 of a file, read a block at a time (a long recording holds gigabytes). */
function fileSha256(file: string): string {
  const hash = createHash('sha256');
  const block = Buffer.alloc(1 << 22);
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, block, 0, block.length, null)) > 0;) hash.update(block.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

function metaFor(specs: readonly ParamSpec[], scoped: readonly boolean[], p: number): FMasksMeta {
  let offset = 0;
  const tensors = specs.flatMap((s, i) => {
    if (!scoped[i]) return [];
    const elements = s.shape.reduce((a, b) => a * b, 1);
    const entry = { name: s.name, shape: s.shape, elements, offset, bytes: bitsetBytes(elements) };
    offset += entry.bytes;
    return [entry];
  });
  return { format: F_MASKS_FORMAT, reserve_p: p, ...keepThreshold(p), step_bytes: offset, tensors };
}

/**
 * Copies one tensor's bitset between the engine's layout and Hugging Face's: the engine keeps dense weights as
 * [in, out] (element r * out + c), the checkpoint as [out, in] (element c * in + r). `to` is cleared first.
 */
function copyBits(spec: ParamSpec, from: Uint8Array, to: Uint8Array, toHuggingFace: boolean) {
  to.fill(0);
  if (!spec.transposed) {
    to.set(from.subarray(0, to.length));
    return;
  }
  const [outDim, inDim] = spec.shape;
  for (let r = 0; r < inDim; r++) {
    for (let c = 0; c < outDim; c++) {
      const [src, dst] = toHuggingFace ? [r * outDim + c, c * inDim + r] : [c * inDim + r, r * outDim + c];
      if ((from[src >> 3] >> (src & 7)) & 1) to[dst >> 3] |= 1 << (dst & 7);
    }
  }
}

/**
 * Records each update's masks into the run directory; a resumed run rewrites from its checkpoint's step on. When
 * the training ends, f-masks.json gets the step count and the sha256 of f-masks.bin, which a replay checks.
 */
function recorder(run: RunDir, specs: readonly ParamSpec[], meta: FMasksMeta, resumedAt: number): FMaskLog {
  run.writeJson(META, meta);
  const file = run.path(BIN);
  fs.writeFileSync(file, '', { flag: 'a' });
  fs.truncateSync(file, resumedAt * meta.step_bytes);
  const block = new Uint8Array(meta.step_bytes);
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  return {
    save(step, bits) {
      for (const t of meta.tensors) {
        const i = byName.get(t.name)!;
        copyBits(specs[i], bits[i], block.subarray(t.offset, t.offset + t.bytes), true);
      }
      const fd = fs.openSync(file, 'r+');
      try {
        fs.writeSync(fd, block, 0, block.length, (step - 1) * meta.step_bytes);
      } finally {
        fs.closeSync(fd);
      }
    },
    finish() {
      const steps = fs.statSync(file).size / meta.step_bytes;
      run.writeJson(META, { ...meta, steps, sha256: fileSha256(file) });
    },
  };
}

/** Loads the masks a run recorded into the bitsets before each update, after checking they fit this run. */
function replayer(dir: string, specs: readonly ParamSpec[], expected: FMasksMeta): FMaskLog {
  const [metaFile, file] = [path.join(dir, META), path.join(dir, BIN)];
  const how = 'Point strategy.f_masks.replay at the directory of a run made with strategy.f_masks.record: true.';
  if (!fs.existsSync(metaFile) || !fs.existsSync(file))
    throw new RunError(`${dir} has no recorded F masks (${META} and ${BIN})`, how);
  let meta: FMasksMeta;
  try {
    meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
  } catch (e) {
    throw new RunError(`${metaFile} is not valid JSON: ${(e as Error).message}`, how);
  }
  if (meta.format !== F_MASKS_FORMAT)
    throw new RunError(`${metaFile} has format ${meta.format}; this childtune reads ${F_MASKS_FORMAT}`, how);
  if (meta.threshold !== expected.threshold)
    throw new RunError(
      `${metaFile} was recorded with reserve_p ${meta.reserve_p}; this recipe has ${expected.reserve_p}`,
      "Replay with the recorded run's strategy.reserve_p.",
    );
  const sameTensors = JSON.stringify(meta.tensors) === JSON.stringify(expected.tensors);
  if (!sameTensors)
    throw new RunError(
      `${metaFile} masks other tensors than this run (model or strategy.scope differ)`,
      "Replay with the recorded run's model and strategy.scope.",
    );
  // A recording is used only whole and as written: a flipped bit would train on masks no run drew.
  if (typeof meta.sha256 !== 'string' || !Number.isInteger(meta.steps))
    throw new RunError(
      `${metaFile} records no step count and sha256 of ${BIN}: the recording run did not finish, or an older childtune wrote it`,
      'Record the masks again with a run that finishes (strategy.f_masks: {record: true}).',
    );
  const steps = meta.steps!;
  if (fs.statSync(file).size !== steps * meta.step_bytes || fileSha256(file) !== meta.sha256)
    throw new RunError(
      `${file} does not match the size and sha256 ${metaFile} recorded (the file is damaged or was cut short)`,
      `Copy ${BIN} again from the recording run's directory, or record the masks again (strategy.f_masks: {record: true}).`,
    );
  const block = new Uint8Array(meta.step_bytes);
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  return {
    load(step, bits) {
      if (step > steps)
        throw new RunError(
          `${file} holds masks for ${steps} optimizer steps; this run needs step ${step}`,
          "Replay with the recorded run's data, epochs and batch size.",
          'train',
        );
      const fd = fs.openSync(file, 'r');
      try {
        fs.readSync(fd, block, 0, block.length, (step - 1) * meta.step_bytes);
      } finally {
        fs.closeSync(fd);
      }
      for (const t of meta.tensors) {
        const i = byName.get(t.name)!;
        copyBits(specs[i], block.subarray(t.offset, t.offset + t.bytes), bits[i], false);
      }
    },
  };
}

/** F's mask record or replay for a run, as strategy.f_masks asks (undefined when it asks for neither). */
export function fMaskLogFor(
  recipe: Recipe,
  strategy: Strategy,
  specs: readonly ParamSpec[],
  run: RunDir,
  resumedAtStep: number,
): FMaskLog | undefined {
  const option = recipe.strategy.f_masks;
  if (!option) return undefined;
  const f = strategy.prepared as PreparedF;
  const meta = metaFor(specs, f.scoped, f.p);
  if (option.replay !== undefined) return replayer(option.replay, specs, meta);
  return option.record ? recorder(run, specs, meta, resumedAtStep) : undefined;
}
