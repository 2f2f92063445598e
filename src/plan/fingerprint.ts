import fs from 'node:fs';
import path from 'node:path';
import { hasWeights, findWeights } from '../engine/model-files.js';
import { TOKENIZER_FILES } from '../engine/tokenizer.js';
import { sha256 } from './hash.js';

export { TOKENIZER_FILES };

const memo = new Map<string, string>();

/** Content hash of a file, memoised by path, size and modification time within one process. */
export function fileFingerprint(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return 'missing';
  }
  const key = `${file}|${st.size}|${st.mtimeMs}`;
  let fp = memo.get(key);
  if (!fp) {
    fp = sha256(fs.readFileSync(file));
    memo.set(key, fp);
  }
  return fp;
}

/**
 * Identity of a model directory without reading every weight: config and tokenizer contents, the safetensors
 * header (names, dtypes, shapes, offsets) and the file size. Re-saved weights with new values change the size
 * or header only rarely, so the header is hashed together with a sample of the data region.
 */
export function modelFingerprint(dir: string): { weights: string; tokenizer: string; config: string } {
  const config = fileFingerprint(path.join(dir, 'config.json'));
  const tokenizer = sha256(TOKENIZER_FILES.map((f) => `${f}:${fs.existsSync(path.join(dir, f)) ? fileFingerprint(path.join(dir, f)) : '-'}`).join('\n'));
  return { weights: hasWeights(dir) ? weightFilesFingerprint(dir) : 'missing', tokenizer, config };
}

/** The weight files transformers would load (model-files.ts), with a sharded checkpoint's index. */
function weightFilesFingerprint(dir: string): string {
  const { index, files } = findWeights(dir);
  if (!index && files.length === 1) return weightsFingerprint(files[0]);
  return sha256([...(index ? [fileFingerprint(index)] : []), ...files.map(weightsFingerprint)].join('|'));
}

function weightsFingerprint(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return 'missing';
  }
  try {
    const size = fs.fstatSync(fd).size;
    // Header plus 64 evenly spaced 4 KiB samples of the data: cheap for multi-GB checkpoints, sensitive to re-training.
    const samples = 64;
    const chunk = Buffer.alloc(Math.min(size, 4096));
    const parts: string[] = [String(size)];
    for (let i = 0; i < samples; i++) {
      const offset = Math.floor(((size - chunk.length) * i) / (samples - 1));
      const n = fs.readSync(fd, chunk, 0, chunk.length, offset);
      parts.push(sha256(chunk.subarray(0, n)));
    }
    const head = Buffer.alloc(8);
    fs.readSync(fd, head, 0, 8, 0);
    const headerLength = Number(head.readBigUInt64LE(0));
    if (headerLength > 0 && headerLength < Math.min(size, 100 << 20)) {
      const header = Buffer.alloc(headerLength);
      fs.readSync(fd, header, 0, headerLength, 8);
      parts.push(sha256(header));
    }
    return sha256(parts.join('|'));
  } finally {
    fs.closeSync(fd);
  }
}
