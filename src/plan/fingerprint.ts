import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { hasWeights, findWeights } from '../engine/model-files.js';
import { TOKENIZER_FILES } from '../engine/tokenizer.js';
import { sha256 } from './hash.js';

export { TOKENIZER_FILES };

const memo = new Map<string, string>();
const CHUNK = 8 << 20;

/**
 * Content hash of a whole file (symlinks followed), read in 8 MiB chunks so multi-GB weights never sit in
 * memory at once. Memoised within the process by real path, device, inode, size and modification time, so
 * a sweep hashes BERT-large once, not once per trial, and a file replaced or rewritten in place is re-read.
 */
export function fileFingerprint(file: string): string {
  let real: string, st: fs.Stats;
  try {
    real = fs.realpathSync(file);
    st = fs.statSync(real);
  } catch {
    return 'missing';
  }
  const key = `${real}|${st.dev}|${st.ino}|${st.size}|${st.mtimeMs}|${st.ctimeMs}`;
  let fp = memo.get(key);
  if (!fp) {
    const hash = createHash('sha256');
    const fd = fs.openSync(real, 'r');
    try {
      const buf = Buffer.alloc(Math.min(CHUNK, Math.max(1, st.size)));
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
    fp = hash.digest('hex');
    memo.set(key, fp);
  }
  return fp;
}

/**
 * Identity of a model directory by content: config.json, the tokenizer files and the weight files, each
 * hashed whole.
 */
export function modelFingerprint(dir: string): { weights: string; tokenizer: string; config: string } {
  const config = fileFingerprint(path.join(dir, 'config.json'));
  const tokenizer = sha256(
    TOKENIZER_FILES.map(
      (f) => `${f}:${fs.existsSync(path.join(dir, f)) ? fileFingerprint(path.join(dir, f)) : '-'}`,
    ).join('\n'),
  );
  return { weights: hasWeights(dir) ? weightFilesFingerprint(dir) : 'missing', tokenizer, config };
}

/**
 * The weight files the loader reads (model-files.ts: safetensors before pytorch_model.bin, a sharded
 * checkpoint's index and every shard it names), each by its full content, symlinks followed: hub-cache
 * snapshots hold symlinks into a blob store. Files the loader would not read do not count.
 */
export function weightFilesFingerprint(dir: string): string {
  const { index, files } = findWeights(dir);
  return sha256(
    [...(index ? [index] : []), ...files].map((f) => `${path.basename(f)}:${fileFingerprint(f)}`).join('\n'),
  );
}

/** Tensor names and shapes of every safetensors file in a model directory, from the headers alone. */
function safetensorsShapes(dir: string): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.safetensors'));
  } catch {
    return shapes;
  }
  for (const n of names) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(path.join(dir, n), 'r');
      const head = Buffer.alloc(8);
      if (fs.readSync(fd, head, 0, 8, 0) < 8) continue;
      const length = Number(head.readBigUInt64LE(0));
      if (length > 100 << 20 || length > fs.fstatSync(fd).size) continue;
      const header = Buffer.alloc(length);
      fs.readSync(fd, header, 0, length, 8);
      for (const [name, info] of Object.entries(
        JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>,
      ))
        if (Array.isArray(info?.shape)) shapes.set(name, info.shape);
    } catch {
      // An unreadable header is the loader's to report; here it only means "cannot tell".
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
  return shapes;
}

/**
 * Whether loading needs a freshly initialised classifier head (drawn from the training seed): true unless
 * every head tensor is in the checkpoint with the shape the task needs. Unknown layouts count as fresh.
 */
export function needsFreshHead(
  dir: string,
  head: readonly { name: string; shape: number[] }[],
  prefix: string,
): boolean {
  const shapes = safetensorsShapes(dir);
  return head.some((t) => {
    const found =
      shapes.get(t.name) ?? (t.name.startsWith(prefix) ? shapes.get(t.name.slice(prefix.length)) : undefined);
    return !found || found.length !== t.shape.length || found.some((d, k) => d !== t.shape[k]);
  });
}
