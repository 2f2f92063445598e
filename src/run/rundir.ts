import fs from 'node:fs';
import path from 'node:path';
import { cleanTemporaries, writeAtomic, writeJsonAtomic, WriteError } from '../engine/files.js';
import { RunError } from './errors.js';
import { DirLock } from './lock.js';

/**
 * A name made safe to be one directory entry: path separators, `..`, control and shell-special characters
 * become '-', so whatever a recipe's name holds, the directory stays inside its parent.
 */
export function slugify(name: string): string {
  const slug = name
    .normalize('NFKC')
    .replace(/\.{2,}|[^\p{L}\p{N}._+=@-]+/gu, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[.-]+|[.-]+$/g, '')
    .slice(0, 100);
  return slug || 'run';
}

/** `parent/child`, refusing a child that would leave parent (`..`, absolute paths, separators). */
export function confined(parent: string, child: string): string {
  const full = path.resolve(parent, child);
  const rel = path.relative(path.resolve(parent), full);
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel) || rel.includes(path.sep))
    throw new RunError(
      `refusing the path ${JSON.stringify(child)}: it would leave ${parent}`,
      'Derived names must be a single directory entry.',
    );
  return full;
}

/** Why a directory could not be created, in words (errno code kept). */
function mkdirFailure(e: NodeJS.ErrnoException): string {
  const code = e.code;
  return code === 'EEXIST' || code === 'ENOTDIR'
    ? 'a file is in the way'
    : code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'ENOSPC'
        ? 'the disk is full'
        : code === 'EROFS'
          ? 'the file system is read-only'
          : code === 'ENOENT'
            ? 'the directory above it accepts no new entries (ENOENT: a read-only or virtual file system such as /proc)'
            : e.message;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdirSync never returns where a parent refuses new entries
 * with ENOENT (procfs), and this also ends there with that error.
 */
export function mkdirs(dir: string) {
  try {
    fs.mkdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && fs.statSync(dir).isDirectory()) return;
    if (code !== 'ENOENT' || path.dirname(dir) === dir) throw e;
    mkdirs(path.dirname(dir));
    fs.mkdirSync(dir);
  }
}

/** Creates `dir` and its parents, or says in one RunError why not, with `hint` (what to set instead). */
export function makeDir(dir: string, what: string, hint = 'Check the permissions of the directory above it.') {
  try {
    mkdirs(path.resolve(dir));
  } catch (e) {
    throw new RunError(`cannot create ${what} ${dir}: ${mkdirFailure(e as NodeJS.ErrnoException)}`, hint);
  }
}

/** Makes `parent/<slug of name>-<time>` (with -1, -2... if taken) and returns it: one directory per run or sweep, never shared. */
export function freshDirectory(parent: string, name: string): string {
  makeDir(parent, 'output directory', 'Set runtime.output_dir to a writable directory.');
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  for (let i = 0; ; i++) {
    const dir = confined(parent, `${slugify(name)}-${stamp}${i ? `-${i}` : ''}`);
    try {
      fs.mkdirSync(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new RunError(
        `cannot create directory ${dir}: ${mkdirFailure(e as NodeJS.ErrnoException)}`,
        'Set runtime.output_dir to a writable directory with free space.',
      );
    }
  }
}

/** A run directory owned by this process (run.lock names it) whose files are written atomically. */
export class RunDir {
  private held?: DirLock;

  private constructor(readonly dir: string) {}

  /** Creates a fresh directory under `parent`; never reuses one another run may be writing. */
  static create(parent: string, name: string, log?: (line: string) => void): RunDir {
    return new RunDir(freshDirectory(parent, name)).lock(log);
  }

  /** Creates (or, when it holds an unfinished run, re-opens) the directory at a fixed path: a sweep's trial-K. */
  static at(dir: string, log?: (line: string) => void): RunDir {
    makeDir(dir, 'run directory');
    return new RunDir(dir).lock(log);
  }

  /** Re-opens an existing run directory (to resume it), taking its lock. */
  static open(dir: string, log?: (line: string) => void): RunDir {
    if (!fs.existsSync(path.join(dir, 'invocation.json')))
      throw new RunError(
        `${dir} is not a childtune run directory (no invocation.json)`,
        'Pass the directory that `childtune run` printed as "run directory".',
      );
    return new RunDir(dir).lock(log);
  }

  readText(name: string): string {
    return fs.readFileSync(this.path(name), 'utf8');
  }

  readJson<T>(name: string): T {
    return JSON.parse(this.readText(name)) as T;
  }

  exists(name: string) {
    return fs.existsSync(this.path(name));
  }

  /** Takes the lock, then removes what an earlier, killed writer left half-written. */
  private lock(log?: (line: string) => void): this {
    this.held = DirLock.acquire(this.dir, log);
    const removed = cleanTemporaries(this.dir, true);
    if (removed)
      log?.(`removed ${removed} temporary file${removed > 1 ? 's' : ''} an interrupted write left in ${this.dir}`);
    return this;
  }

  unlock() {
    this.held?.release();
    this.held = undefined;
  }

  path(...parts: string[]) {
    return path.join(this.dir, ...parts);
  }

  writeJson(name: string, value: unknown) {
    writeJsonAtomic(this.path(name), value);
  }

  writeBytes(name: string, data: Uint8Array) {
    writeAtomic(this.path(name), data);
  }

  writeText(name: string, text: string) {
    writeAtomic(this.path(name), text);
  }

  remove(name: string) {
    fs.rmSync(this.path(name), { force: true });
  }

  /** One complete line per call: a crash loses at most the line being written. */
  appendJsonl(name: string, value: unknown) {
    try {
      fs.appendFileSync(this.path(name), JSON.stringify(value) + '\n');
    } catch (e) {
      throw new WriteError(this.path(name), e as NodeJS.ErrnoException);
    }
  }
}
