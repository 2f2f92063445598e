import fs from 'node:fs';
import path from 'node:path';
import { cleanTemporaries, publish, TMP_SUFFIX, writeAtomic, writeJsonAtomic, WriteError } from '../engine/files.js';
import { formatBytes } from '../plan/estimate.js';
import { sha256 } from '../plan/hash.js';
import { cacheEntryDir, isCacheEntryComplete } from '../plan/stages.js';
import { ARTIFACT_VERSIONS, checkVersion, isObject } from './artifacts.js';
import { RunError } from './errors.js';
import { mkdirs } from './rundir.js';

/** done.json: what a complete entry holds, with the sha256 of each file's content. */
export interface CacheManifest {
  version: 1;
  kind: string;
  hash: string;
  files: Record<string, string>;
  at: string;
}

export type CacheRead =
  | { state: 'hit'; files: Record<string, Buffer> }
  | { state: 'miss' }
  | { state: 'corrupt'; why: string; movedTo: string };

/**
 * Stage outputs stored by content hash: `<cache>/<kind>/<hash>/`. An entry is written whole into a temporary
 * directory and renamed into place, so it is either absent or complete; done.json records each file's sha256,
 * checked on every read. An entry is never replaced: a second write must bring the same content.
 */
export class StageCache {
  constructor(readonly root: string) {}

  dir(kind: string, hash: string) {
    return cacheEntryDir(this.root, kind, hash);
  }

  has(kind: string, hash: string) {
    return isCacheEntryComplete(this.root, kind, hash);
  }

  /** Fails early, before a stage is computed, when the cache directory cannot be written. */
  checkWritable() {
    try {
      mkdirs(path.resolve(this.root));
      fs.accessSync(this.root, fs.constants.W_OK);
    } catch (e) {
      throw new RunError(
        `cache directory ${this.root} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        'Set runtime.cache_dir to a writable directory, or fix its permissions.',
      );
    }
    cleanTemporaries(this.root, false);
  }

  /**
   * Fails before a stage is computed when the cache's file system has less room than its entry (`bytes`, an
   * upper bound) needs, rather than after the work, when the entry is written.
   */
  checkSpace(kind: string, bytes: number) {
    const fsStats = fs.statfsSync(this.root);
    const free = fsStats.bavail * fsStats.bsize;
    if (free < bytes)
      throw new RunError(
        `cache directory ${this.root} has ${formatBytes(free)} free, but the ${kind} stage's entry needs about ${formatBytes(bytes)}`,
        'Free disk space there, or set runtime.cache_dir to a directory with room.',
      );
  }

  /**
   * The entry's files, each verified against done.json. A corrupt entry (a file missing or changed since it
   * was written) is moved aside, never used, and reported so the caller recomputes it.
   */
  read(kind: string, hash: string): CacheRead {
    const dir = this.dir(kind, hash);
    if (!this.has(kind, hash)) return { state: 'miss' };
    const why = (() => {
      let manifest: CacheManifest;
      try {
        manifest = JSON.parse(fs.readFileSync(path.join(dir, 'done.json'), 'utf8'));
      } catch (e) {
        return `done.json is unreadable (${(e as Error).message})`;
      }
      if (!isObject(manifest)) return 'done.json is not an object';
      // An entry a newer childtune wrote is refused, not moved aside: that childtune can still use it.
      checkVersion(
        path.join(dir, 'done.json'),
        'cache-entry',
        manifest as unknown as Record<string, unknown>,
        'Run this recipe with the childtune that wrote the cache, or set runtime.cache_dir to another directory.',
      );
      if (manifest.hash !== hash || manifest.kind !== kind || !manifest.files || typeof manifest.files !== 'object')
        return 'done.json does not describe this entry';
      const files: Record<string, Buffer> = {};
      for (const [name, digest] of Object.entries(manifest.files)) {
        const file = path.join(dir, name);
        if (!fs.existsSync(file)) return `${name} is missing`;
        files[name] = fs.readFileSync(file);
        if (sha256(files[name]) !== digest) return `${name} does not match the hash recorded when it was written`;
      }
      return files;
    })();
    if (typeof why !== 'string') return { state: 'hit', files: why };
    const movedTo = `${dir}.corrupt-${Date.now()}`;
    fs.renameSync(dir, movedTo);
    return { state: 'corrupt', why, movedTo };
  }

  /** Stores a complete entry; if one exists already it must hold the same content (else a RunError). */
  write(kind: string, hash: string, files: Record<string, string | Uint8Array>): void {
    const dir = this.dir(kind, hash);
    const manifest: CacheManifest = {
      version: ARTIFACT_VERSIONS['cache-entry'],
      kind,
      hash,
      files: Object.fromEntries(Object.entries(files).map(([n, d]) => [n, sha256(d)])),
      at: new Date().toISOString(),
    };
    if (!this.has(kind, hash)) {
      const tmp = dir + TMP_SUFFIX;
      fs.rmSync(tmp, { recursive: true, force: true });
      try {
        fs.mkdirSync(tmp, { recursive: true });
      } catch (e) {
        throw new WriteError(tmp, e as NodeJS.ErrnoException);
      }
      for (const [name, data] of Object.entries(files)) writeAtomic(path.join(tmp, name), data);
      writeJsonAtomic(path.join(tmp, 'done.json'), manifest);
      try {
        publish(tmp, dir);
        return;
      } catch (e) {
        fs.rmSync(tmp, { recursive: true, force: true });
        // Another process stored the same entry meanwhile: compare below.
        if (!['EEXIST', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? ''))
          throw new WriteError(dir, e as NodeJS.ErrnoException);
      }
    }
    const existing = this.read(kind, hash);
    if (existing.state !== 'hit') return this.write(kind, hash, files);
    const differs = Object.entries(manifest.files)
      .filter(([n, d]) => !existing.files[n] || sha256(existing.files[n]) !== d)
      .map(([n]) => n);
    if (differs.length)
      throw new RunError(
        `cache entry ${dir} already holds a different ${differs.join(', ')} for the same inputs; it is kept, not overwritten`,
        'The stage gave a different result from identical inputs. Rerun with --debug and report it; delete the entry to accept the new result.',
      );
  }
}
