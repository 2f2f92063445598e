import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic, writeJsonAtomic } from '../engine/files.js';
import type { ParamSpec } from '../engine/params.js';
import { parseSafetensors, safetensorsChunks, SafetensorsError } from '../engine/safetensors.js';
import { checkVersion, isObject } from './artifacts.js';
import { RunError } from './errors.js';
import type { LoopState } from './train.js';

/**
 * Resumable training checkpoints inside a run directory:
 *   checkpoints/step-000120/state.safetensors  weights, Adam moments (and the best epoch's weights)
 *   checkpoints/step-000120/loop.json          loop position, counters, what the run was started with
 *   checkpoint.json                            which of them is the latest complete one
 * Every file is written atomically (temporary file, fsync, rename) and checkpoint.json only moves once the
 * new checkpoint is complete, so a crash at any moment leaves the previous checkpoint usable.
 */
export interface CheckpointMeta {
  version: 1;
  /** Hash of the run-defining recipe fields; a resumed run must match it. */
  recipeHash: string;
  backend: string;
  threads: number;
  /** The child network (fisher stage cache key) the run trains, for Child-Tuning-D. */
  fisherHash?: string;
  adamStep: number;
  loop: LoopState;
}

export interface TrainingCheckpoint {
  meta: CheckpointMeta;
  values: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  best?: Float32Array[];
}

const POINTER = 'checkpoint.json';

export function writeCheckpoint(runDir: string, specs: readonly ParamSpec[], c: TrainingCheckpoint): string {
  const rel = path.join('checkpoints', `step-${String(c.meta.loop.step).padStart(6, '0')}`);
  const dir = path.join(runDir, rel);
  fs.mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (group: string, arrays: Float32Array[]) =>
    specs.forEach((s, i) => tensors.set(`${group}/${s.name}`, { shape: [arrays[i].length], data: arrays[i] }));
  put('param', c.values);
  put('adam_m', c.m);
  put('adam_v', c.v);
  if (c.best) put('best', c.best);
  writeAtomic(path.join(dir, 'state.safetensors'), safetensorsChunks(tensors, { format: 'childtune-checkpoint' }));
  writeJsonAtomic(path.join(dir, 'loop.json'), c.meta);
  writeJsonAtomic(path.join(runDir, POINTER), { dir: rel, step: c.meta.loop.step });
  for (const old of fs.readdirSync(path.join(runDir, 'checkpoints'))) {
    if (path.join('checkpoints', old) !== rel)
      fs.rmSync(path.join(runDir, 'checkpoints', old), { recursive: true, force: true });
  }
  return rel;
}

/** The latest complete checkpoint's directory (relative to the run), or undefined when there is none. */
export function latestCheckpoint(runDir: string): string | undefined {
  const file = path.join(runDir, POINTER);
  if (!fs.existsSync(file)) return undefined;
  let pointer: unknown;
  try {
    pointer = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw damagedPointer(file, (e as Error).message);
  }
  // Only a checkpoint directory of this run: the pointer is read back from disk, so it is confined like any path.
  const dir = isObject(pointer) ? pointer.dir : undefined;
  if (typeof dir !== 'string' || !/^checkpoints[/\\]step-\d+$/.test(dir))
    throw damagedPointer(file, `"dir" must name a checkpoints/step-NNNNNN directory, found ${JSON.stringify(dir)}`);
  return dir;
}

const damagedPointer = (file: string, why: string) =>
  new RunError(
    `${file} is damaged: ${why}`,
    'Restore it as {"dir": "checkpoints/step-NNNNNN", "step": N} naming the newest directory under checkpoints/, or start the run again without --resume.',
    'resume',
  );

export function readCheckpoint(runDir: string, specs: readonly ParamSpec[]): TrainingCheckpoint | undefined {
  const rel = latestCheckpoint(runDir);
  if (!rel) return undefined;
  const dir = path.join(runDir, rel);
  const where = path.join(dir, 'state.safetensors');
  let meta: CheckpointMeta;
  let tensors;
  try {
    meta = JSON.parse(fs.readFileSync(path.join(dir, 'loop.json'), 'utf8'));
    checkVersion(
      path.join(dir, 'loop.json'),
      'checkpoint',
      meta as unknown as Record<string, unknown>,
      'Resume with the childtune that wrote the checkpoint, or start the run again without --resume.',
    );
    tensors = parseSafetensors(fs.readFileSync(where), where);
  } catch (e) {
    if (e instanceof SafetensorsError || e instanceof SyntaxError || (e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new RunError(
        `checkpoint ${dir} is unreadable: ${(e as Error).message}`,
        'Start the run again without --resume.',
      );
    throw e;
  }
  const group = (name: string, optional = false): Float32Array[] | undefined => {
    if (optional && !tensors.has(`${name}/${specs[0].name}`)) return undefined;
    return specs.map((s) => {
      const t = tensors.get(`${name}/${s.name}`);
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (!t || t.data.length !== n)
        throw new RunError(
          `checkpoint ${where} lacks ${name}/${s.name} or has the wrong size`,
          'The checkpoint belongs to another model; start the run again without --resume.',
        );
      return t.data;
    });
  };
  return { meta, values: group('param')!, m: group('adam_m')!, v: group('adam_v')!, best: group('best', true) };
}
