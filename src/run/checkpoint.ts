import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic, writeJsonAtomic } from '../engine/files.js';
import type { ParamSpec } from '../engine/params.js';
import { parseSafetensors, safetensorsChunks, SafetensorsError } from '../engine/safetensors.js';
import { sha256 } from '../plan/hash.js';
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
  /** The matrix kernels that trained it (absent before they were recorded: exact kernels). */
  kernels?: string;
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
const STATE = 'state.safetensors';
const LOOP = 'loop.json';

/** A checkpoint as checkpoint.json records it: where it is, its step, and the sha256 of each file written. */
interface CheckpointRecord {
  dir: string;
  step: number;
  /** Absent in checkpoints written before checksums were recorded. */
  sha256?: Record<string, string>;
}

/** checkpoint.json: the latest complete checkpoint, and the one before it, kept as a fallback. */
interface Pointer extends CheckpointRecord {
  previous?: CheckpointRecord;
}

/** Hashes the chunks as they are written, so a checkpoint is never read back to be hashed. */
function* hashed(chunks: Iterable<Uint8Array>, hash: Hash): Generator<Uint8Array> {
  for (const chunk of chunks) {
    hash.update(chunk);
    yield chunk;
  }
}

function readPointer(runDir: string): Pointer | undefined {
  const file = path.join(runDir, POINTER);
  if (!fs.existsSync(file)) return undefined;
  let pointer: unknown;
  try {
    pointer = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw damagedPointer(file, `not valid JSON (${(e as Error).message})`);
  }
  // Only checkpoint directories of this run: the pointer is read back from disk, so it is confined like any path.
  const records = isObject(pointer) ? [pointer, pointer.previous].filter((r) => r !== undefined) : [pointer];
  for (const r of records) {
    const dir = isObject(r) ? r.dir : undefined;
    if (typeof dir !== 'string' || !/^checkpoints[/\\]step-\d+$/.test(dir))
      throw damagedPointer(file, `"dir" must name a checkpoints/step-NNNNNN directory, found ${JSON.stringify(dir)}`);
  }
  return pointer as Pointer;
}

const damagedPointer = (file: string, why: string) =>
  new RunError(
    `${file} is damaged: ${why}`,
    'Restore it as {"dir": "checkpoints/step-NNNNNN", "step": N} naming the newest directory under checkpoints/, or start the run again without --resume.',
    'resume',
  );

/**
 * The matrix kernels the latest checkpoint of a run trained with, read before the run chooses its own so a resume
 * keeps them where this CPU has them; undefined when there is no readable checkpoint (the resume itself says why).
 */
export function checkpointKernels(runDir: string): string | undefined {
  try {
    const pointer = readPointer(runDir);
    if (!pointer) return undefined;
    const meta: unknown = JSON.parse(fs.readFileSync(path.join(runDir, pointer.dir, LOOP), 'utf8'));
    return isObject(meta) && typeof meta.kernels === 'string' ? meta.kernels : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes a checkpoint and points checkpoint.json at it, with the sha256 of each of its files. The checkpoint
 * before it is kept, so a damaged latest one (a flipped bit on disk) still leaves one to resume from.
 */
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
  const state = createHash('sha256');
  writeAtomic(path.join(dir, STATE), hashed(safetensorsChunks(tensors, { format: 'childtune-checkpoint' }), state));
  const loop = JSON.stringify(c.meta, null, 2) + '\n';
  writeAtomic(path.join(dir, LOOP), loop);
  const old = readPointer(runDir);
  // A second checkpoint at the same step (an interrupt right after a periodic one) replaces it, not its fallback.
  const previous = old && old.dir !== rel ? { dir: old.dir, step: old.step, sha256: old.sha256 } : old?.previous;
  const pointer: Pointer = {
    dir: rel,
    step: c.meta.loop.step,
    sha256: { [STATE]: state.digest('hex'), [LOOP]: sha256(loop) },
    previous,
  };
  writeJsonAtomic(path.join(runDir, POINTER), pointer);
  const keep = new Set([rel, previous?.dir]);
  for (const entry of fs.readdirSync(path.join(runDir, 'checkpoints'))) {
    if (!keep.has(path.join('checkpoints', entry)))
      fs.rmSync(path.join(runDir, 'checkpoints', entry), { recursive: true, force: true });
  }
  return rel;
}

/** The latest complete checkpoint's directory (relative to the run), or undefined when there is none. */
export const latestCheckpoint = (runDir: string): string | undefined => readPointer(runDir)?.dir;

/**
 * The latest intact checkpoint, each file checked against the sha256 checkpoint.json recorded: a damaged latest
 * one is named and the one before it used (`log` says so); with none intact, resuming is refused.
 */
export function readCheckpoint(
  runDir: string,
  specs: readonly ParamSpec[],
  log: (line: string) => void,
): (TrainingCheckpoint & { dir: string }) | undefined {
  const pointer = readPointer(runDir);
  if (!pointer) return undefined;
  const problems: string[] = [];
  for (const c of [pointer, pointer.previous]) {
    if (!c) continue;
    const read = readChecked(runDir, c);
    if (typeof read === 'string') {
      problems.push(read);
      continue;
    }
    if (problems.length)
      log(`resume: ${problems.join('; ')}; falling back to the checkpoint before it, ${c.dir} (step ${c.step})`);
    return { ...groups(read, specs), dir: c.dir };
  }
  throw new RunError(
    `cannot resume ${runDir}: ${problems.join('; ')}; no earlier intact checkpoint is left`,
    `Start the run again without --resume, or remove ${path.join(runDir, POINTER)} to train again from the start in this directory.`,
    'resume',
  );
}

interface ParsedCheckpoint {
  meta: CheckpointMeta;
  where: string;
  tensors: ReturnType<typeof parseSafetensors>;
}

/**
 * A checkpoint's files, parsed and each checked against its recorded sha256; or why they cannot be used. A newer
 * version is refused outright (that childtune can resume it); a file that does not parse is named with what is
 * wrong, and one that parses but is not what was written (a flipped bit) by its checksum.
 */
function readChecked(runDir: string, c: CheckpointRecord): ParsedCheckpoint | string {
  const dir = path.join(runDir, c.dir);
  const [loopFile, where] = [path.join(dir, LOOP), path.join(dir, STATE)];
  let parsed: ParsedCheckpoint;
  const bytes = new Map<string, Buffer>();
  try {
    bytes.set(LOOP, fs.readFileSync(loopFile));
    const meta: CheckpointMeta = JSON.parse(bytes.get(LOOP)!.toString('utf8'));
    checkVersion(
      loopFile,
      'checkpoint',
      meta as unknown as Record<string, unknown>,
      'Resume with the childtune that wrote the checkpoint, or start the run again without --resume.',
    );
    bytes.set(STATE, fs.readFileSync(where));
    parsed = { meta: withInfinities(meta), where, tensors: parseSafetensors(bytes.get(STATE)!, where) };
  } catch (e) {
    if (e instanceof SafetensorsError || e instanceof SyntaxError || (e as NodeJS.ErrnoException).code === 'ENOENT')
      return `checkpoint ${dir} is unreadable: ${(e as Error).message}`;
    throw e;
  }
  for (const [name, digest] of Object.entries(c.sha256 ?? {})) {
    const data = bytes.get(name);
    if (data && sha256(data) !== digest)
      return `${path.join(dir, name)} does not match the sha256 recorded when it was written (the file is damaged)`;
  }
  return parsed;
}

/**
 * JSON has no infinities: the best score before the first evaluation, -Infinity, is written as null. Read back as
 * null it would compare as 0 (a first score below 0 would never be the best, nor any score an improvement by
 * early stopping's min_delta), so it is restored.
 */
function withInfinities(meta: CheckpointMeta): CheckpointMeta {
  const best = meta.loop?.best as { score: number | null } | undefined;
  if (best && best.score === null) best.score = -Infinity;
  return meta;
}

function groups({ meta, where, tensors }: ParsedCheckpoint, specs: readonly ParamSpec[]): TrainingCheckpoint {
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
