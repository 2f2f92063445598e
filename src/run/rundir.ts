import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic, WriteError } from '../engine/checkpoint.js';
import { RunError } from './errors.js';

/** Makes `parent/name-<time>` (with -1, -2... if taken) and returns it: one directory per run or sweep, never shared. */
export function freshDirectory(parent: string, name: string): string {
  fs.mkdirSync(parent, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  for (let i = 0; ; i++) {
    const dir = path.join(parent, `${name}-${stamp}${i ? `-${i}` : ''}`);
    try {
      fs.mkdirSync(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new RunError(`cannot create directory ${dir}: ${(e as Error).message}`, 'Check runtime.output_dir and free disk space.');
    }
  }
}

/** A run directory owned by this process (run.lock holds the pid) whose files are written atomically. */
export class RunDir {
  private constructor(readonly dir: string) {}

  /** Creates a fresh directory under `parent`; never reuses one another run may be writing. */
  static create(parent: string, name: string): RunDir {
    const run = new RunDir(freshDirectory(parent, name));
    run.lock();
    return run;
  }

  /** Creates (or, when it holds an unfinished run, re-opens) the directory at a fixed path: a sweep's trial-K. */
  static at(dir: string): RunDir {
    fs.mkdirSync(dir, { recursive: true });
    const run = new RunDir(dir);
    run.lock();
    return run;
  }

  /** Re-opens an existing run directory (to resume it), taking its lock. */
  static open(dir: string): RunDir {
    if (!fs.existsSync(path.join(dir, 'invocation.json'))) throw new RunError(`${dir} is not a childtune run directory (no invocation.json)`, 'Pass the directory that `childtune run` printed as "run directory".');
    const run = new RunDir(dir);
    run.lock();
    return run;
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

  private lock() {
    const file = path.join(this.dir, 'run.lock');
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
    } catch {
      const pid = Number(fs.readFileSync(file, 'utf8'));
      const alive = (() => { try { process.kill(pid, 0); return true; } catch { return false; } })();
      throw new RunError(alive ? `${this.dir} is in use by process ${pid}` : `${this.dir} has a stale lock from dead process ${pid}`, alive ? 'Wait for it, or use another output directory.' : `Remove ${file} if no run is using the directory.`);
    }
  }

  unlock() {
    fs.rmSync(path.join(this.dir, 'run.lock'), { force: true });
  }

  path(...parts: string[]) {
    return path.join(this.dir, ...parts);
  }

  writeJson(name: string, value: unknown) {
    writeAtomic(this.path(name), JSON.stringify(value, null, 2) + '\n');
  }

  writeBytes(name: string, data: Uint8Array) {
    writeAtomic(this.path(name), data);
  }

  writeText(name: string, text: string) {
    writeAtomic(this.path(name), text);
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
