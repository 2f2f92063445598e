import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TMP_SUFFIX } from '../engine/files.js';
import { processEnded, startTimeOf } from '../engine/process.js';
import { RunError } from './errors.js';

/** Who holds a directory: enough to tell, on this host, whether that process still runs. */
export interface LockOwner {
  pid: number;
  host: string;
  /** The kernel's boot id: a lock from before a reboot is dead whatever its pid. */
  boot_id: string | null;
  /** The process's start time (clock ticks since boot, /proc/PID/stat): tells a reused pid from the owner. */
  start_time: string | null;
  at: string;
}

/** Another host's lock counts as abandoned once its heartbeat (the file's mtime) is this old. */
export const HEARTBEAT_MS = 30_000;
export const ABANDONED_AFTER_MS = 10 * 60_000;

const readOr = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
};

export const bootId = () => readOr('/proc/sys/kernel/random/boot_id');

export const currentOwner = (): LockOwner => ({
  pid: process.pid,
  host: os.hostname(),
  boot_id: bootId(),
  start_time: startTimeOf(process.pid),
  at: new Date().toISOString(),
});

/** 'alive', 'dead', or 'unknown' (another host, recently active: we cannot look at its processes). */
function ownerState(o: LockOwner, mtimeMs: number): 'alive' | 'dead' | 'unknown' {
  if (o.host !== os.hostname()) return Date.now() - mtimeMs > ABANDONED_AFTER_MS ? 'dead' : 'unknown';
  if (o.boot_id && o.boot_id !== bootId()) return 'dead';
  return processEnded(o.pid, o.start_time || null) ? 'dead' : 'alive';
}

/**
 * An exclusive lock on a directory: `run.lock` holds a LockOwner. A lock whose owner is gone (same host, pid
 * not running or reused, or rebooted since; another host silent for 10 minutes) is taken over with a log
 * line; a live one is refused, naming pid and host. While held, its mtime is touched every 30 s.
 */
export class DirLock {
  private heartbeat?: NodeJS.Timeout;

  private constructor(readonly file: string) {}

  static acquire(dir: string, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): DirLock {
    const lock = new DirLock(path.join(dir, 'run.lock'));
    try {
      lock.take(log);
    } catch (e) {
      if (e instanceof RunError) throw e;
      throw new RunError(
        `cannot lock ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        'The run directory must be writable; check its permissions, or set runtime.output_dir elsewhere.',
      );
    }
    lock.heartbeat = setInterval(() => fs.utimes(lock.file, new Date(), new Date(), () => {}), HEARTBEAT_MS).unref();
    return lock;
  }

  private take(log: (line: string) => void) {
    const tmp = this.file + TMP_SUFFIX;
    const content = JSON.stringify(currentOwner()) + '\n';
    fs.writeFileSync(tmp, content);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          // link() publishes the complete file and fails if a lock exists: no window with a half-written lock.
          // File systems without hard links get an exclusive create instead.
          try {
            fs.linkSync(tmp, this.file);
          } catch (e) {
            if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes((e as NodeJS.ErrnoException).code ?? ''))
              throw e;
            fs.writeFileSync(this.file, content, { flag: 'wx' });
          }
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
        }
        this.takeOverIfDead(log);
      }
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  private takeOverIfDead(log: (line: string) => void) {
    const text = readOr(this.file);
    if (text === null) return;
    const dir = path.dirname(this.file);
    const owner = ownerIn(text);
    // An unreadable lock (empty, truncated by a crash or a full disk) names no process that could still hold it.
    if (owner) {
      const state = ownerState(owner, fs.statSync(this.file, { throwIfNoEntry: false })?.mtimeMs ?? 0);
      if (state === 'alive')
        throw new RunError(
          `${dir} is in use by process ${owner.pid} on this host (${owner.host})`,
          'Wait for it to finish, or stop it (Ctrl-C lets it stop cleanly).',
        );
      if (state === 'unknown')
        throw new RunError(
          `${dir} is locked by process ${owner.pid} on host ${owner.host}, active in the last ${ABANDONED_AFTER_MS / 60_000} minutes`,
          `If that run is gone, wait ${ABANDONED_AFTER_MS / 60_000} minutes from its last activity, or remove ${this.file}.`,
        );
    }
    // Move the dead lock aside and check it is the one we judged: a concurrent taker may have replaced it.
    const aside = `${this.file}.stale${TMP_SUFFIX}`;
    try {
      fs.renameSync(this.file, aside);
    } catch {
      return;
    }
    if (readOr(aside) !== text) {
      fs.renameSync(aside, this.file);
      throw new RunError(
        `${dir} was just taken over by another process`,
        'Only one retry can own a run directory; this one stops.',
      );
    }
    fs.rmSync(aside, { force: true });
    log(
      owner
        ? `lock: took over ${this.file} from process ${owner.pid} on ${owner.host}, which is no longer running`
        : `lock: took over ${this.file}, which was unreadable (${text ? 'not a lock record' : 'empty'}): no process can hold it`,
    );
  }

  release() {
    clearInterval(this.heartbeat);
    const holder = readOr(this.file);
    const me = currentOwner();
    const o = holder === null ? undefined : ownerIn(holder);
    if (o && o.pid === me.pid && o.start_time === me.start_time) fs.rmSync(this.file, { force: true });
  }
}

/** The owner a lock file's text records, or undefined when it records none (empty, damaged, pid not positive). */
function ownerIn(text: string): LockOwner | undefined {
  let owner: LockOwner;
  try {
    owner = JSON.parse(text);
    if (!Number.isInteger(owner?.pid)) throw new Error('no pid');
  } catch {
    // Locks before this format held only a pid.
    owner = { pid: Number(text), host: os.hostname(), boot_id: null, start_time: null, at: '' };
  }
  // pid 0 or a negative one would make process.kill address a whole process group, which always exists.
  return Number.isSafeInteger(owner.pid) && owner.pid > 0 ? owner : undefined;
}
