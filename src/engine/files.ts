import fs from 'node:fs';
import path from 'node:path';
import { ChildtuneError } from './errors.js';

/** A failed write (disk full, no permission), naming the file; the previous version of the file is intact. */
export class WriteError extends ChildtuneError {
  declare readonly hint: string;
  constructor(
    readonly file: string,
    cause: NodeJS.ErrnoException,
  ) {
    const why =
      cause.code === 'ENOSPC'
        ? 'the disk is full'
        : cause.code === 'EACCES' || cause.code === 'EPERM'
          ? 'permission denied'
          : cause.code === 'EROFS'
            ? 'the file system is read-only'
            : cause.code === 'ENOENT' || cause.code === 'ENOTDIR'
              ? 'its directory does not exist'
              : cause.message;
    super('write', `cannot write ${file}: ${why}`, {
      hint:
        cause.code === 'ENOSPC'
          ? 'Free disk space, then continue with: childtune run --resume RUN_DIR (checkpoints written so far are intact).'
          : "Check the directory's permissions, or set runtime.output_dir elsewhere.",
    });
  }
}

/** Suffix of this process's temporary files; `cleanTemporaries` removes those of dead processes. */
export const TMP_SUFFIX = `.tmp-${process.pid}`;

let renames = 0;

/**
 * Every rename that publishes a file goes through here. For the fault-injection tests,
 * CHILDTUNE_FAULT_AT=N[:SIGNAL] sends this process SIGNAL (default SIGKILL) just before its N-th rename.
 */
export function publish(from: string, to: string) {
  renames++;
  const fault = process.env.CHILDTUNE_FAULT_AT;
  if (fault) {
    const [at, signal] = fault.split(':');
    if (Number(at) === renames) process.kill(process.pid, (signal || 'SIGKILL') as NodeJS.Signals);
  }
  fs.renameSync(from, to);
}

/**
 * Write to a temporary file, fsync, rename: readers never see a half-written file, and a failure leaves the old one.
 * `data` may come as chunks (a generator), each written before the next is asked for: a large file is never held whole.
 */
export function writeAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array>) {
  const tmp = file + TMP_SUFFIX;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      const chunks = typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data;
      for (const bytes of chunks)
        for (let at = 0; at < bytes.length;) at += fs.writeSync(fd, bytes, at, bytes.length - at);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    publish(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new WriteError(file, e as NodeJS.ErrnoException);
  }
}

/**
 * Removes `*.tmp-PID` files and directories under `dir` (recursively) that no running writer owns: what a
 * SIGKILL between write and rename leaves. `owned`: the caller holds the directory's lock and has written
 * nothing yet, so every temporary is a leftover (even one named with this pid: a container's retry is PID 1
 * again); otherwise only those of processes no longer alive here, or older than a day. Returns the count.
 */
export function cleanTemporaries(dir: string, owned: boolean): number {
  let removed = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    const m = /\.tmp-(\d+)$/.exec(e.name);
    if (m && (owned || abandoned(full, Number(m[1])))) {
      fs.rmSync(full, { recursive: true, force: true });
      removed++;
    } else if (e.isDirectory()) removed += cleanTemporaries(full, owned);
  }
  return removed;
}

const DAY_MS = 24 * 3600 * 1000;

function abandoned(file: string, pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return true;
  }
  return Date.now() - fs.statSync(file).mtimeMs > DAY_MS;
}

/** A JSON file as childtune writes them all: two-space indented, a final newline, atomically. */
export const writeJsonAtomic = (file: string, value: unknown) =>
  writeAtomic(file, JSON.stringify(value, null, 2) + '\n');
