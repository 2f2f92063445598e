import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic } from '../engine/checkpoint.js';

/** Stage outputs stored by content hash: `<cache>/<kind>/<hash>/`, complete once done.json exists. */
export class StageCache {
  constructor(readonly root: string) {}

  dir(kind: string, hash: string) {
    return path.join(this.root, kind, hash);
  }

  has(kind: string, hash: string) {
    return fs.existsSync(path.join(this.dir(kind, hash), 'done.json'));
  }

  read(kind: string, hash: string, file: string): Buffer {
    return fs.readFileSync(path.join(this.dir(kind, hash), file));
  }

  /** Writes the files, then done.json last, so a crash never leaves a stage that looks complete. */
  write(kind: string, hash: string, files: Record<string, string | Uint8Array>) {
    const dir = this.dir(kind, hash);
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, data] of Object.entries(files)) writeAtomic(path.join(dir, name), data);
    writeAtomic(path.join(dir, 'done.json'), JSON.stringify({ kind, hash, at: new Date().toISOString() }) + '\n');
  }
}
