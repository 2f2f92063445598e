import fs from 'node:fs';
import { ChildtuneError } from './errors.js';
import { decodeContiguous, DTYPE_BYTES, isDtype, type Dtype } from './dtype.js';

export class SafetensorsError extends ChildtuneError {
  constructor(readonly file: string, message: string, hint?: string) {
    super('safetensors', `${file}: ${message}`, { hint });
  }
}

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** Values as float32, whatever the stored dtype. */
  data: Float32Array;
}

/** A Git LFS pointer in place of the weights: the repository was cloned without `git lfs`. */
export const isLfsPointer = (buf: Uint8Array) => Buffer.from(buf.subarray(0, 40)).toString('latin1').startsWith('version https://git-lfs');
export const LFS_HINT = 'The file is a Git LFS pointer, not the weights: run `git lfs pull` in the clone, or fetch the model with `childtune fetch MODEL_ID`.';
/** Bounds that keep a hostile header from making us allocate without limit. */
export const SAFETENSORS_LIMITS = { headerBytes: 100 << 20, tensors: 100_000, rank: 8 } as const;

/** Reads a safetensors file, checking every header field against the file before touching data. */
export function readSafetensors(file: string): Map<string, TensorInfo> {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SafetensorsError(file, code === 'ENOENT' ? 'file not found' : `cannot read (${(e as Error).message})`);
  }
  return parseSafetensors(buf, file);
}

export function parseSafetensors(buf: Uint8Array, file = '<buffer>'): Map<string, TensorInfo> {
  if (isLfsPointer(buf)) throw new SafetensorsError(file, 'holds a Git LFS pointer instead of tensors', LFS_HINT);
  if (buf.length < 8) throw new SafetensorsError(file, `file is ${buf.length} bytes; too short for a safetensors header (truncated?)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > SAFETENSORS_LIMITS.headerBytes || 8 + headerLength > buf.length) {
    throw new SafetensorsError(file, `header claims ${headerLength} bytes but the file has ${buf.length - 8} after the length field (truncated or not safetensors)`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, headerLength).toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new SafetensorsError(file, 'header must be a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = buf.length - dataStart;
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
  if (entries.length > SAFETENSORS_LIMITS.tensors) throw new SafetensorsError(file, `header lists ${entries.length} tensors (limit ${SAFETENSORS_LIMITS.tensors})`);
  // Every entry is checked against the file, and overlaps ruled out, before anything is decoded: the floats
  // allocated are then bounded by the file's own size, whatever the header claims.
  const spans: { begin: number; end: number; name: string; dtype: TensorInfo['dtype']; shape: number[]; elements: number }[] = [];
  for (const [name, raw] of entries) {
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info !== 'object') throw new SafetensorsError(file, `tensor '${name}': entry is not an object`);
    if (!isDtype(info.dtype)) throw new SafetensorsError(file, `tensor '${name}': dtype ${JSON.stringify(info.dtype)} is not supported (${Object.keys(DTYPE_BYTES).join(', ')})`);
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.length > SAFETENSORS_LIMITS.rank || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `tensor '${name}': shape ${JSON.stringify(shape)} is not a list of at most ${SAFETENSORS_LIMITS.rank} non-negative integers`);
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(file, `tensor '${name}': data_offsets ${JSON.stringify(offsets)} must be [begin, end] with begin <= end`);
    }
    if (offsets[1] > dataLength) throw new SafetensorsError(file, `tensor '${name}': data ends at byte ${offsets[1]} but the file holds ${dataLength} (truncated mid-tensor)`);
    const elements = shape.reduce((a: number, b: number) => a * b, 1);
    const bytes = elements * DTYPE_BYTES[info.dtype];
    if (offsets[1] - offsets[0] !== bytes) throw new SafetensorsError(file, `tensor '${name}': shape ${JSON.stringify(shape)} needs ${bytes} bytes but its offsets span ${offsets[1] - offsets[0]}`);
    spans.push({ begin: offsets[0], end: offsets[1], name, dtype: info.dtype, shape: shape as number[], elements });
  }
  const sorted = [...spans].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) throw new SafetensorsError(file, `tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
  }
  const out = new Map<string, TensorInfo>();
  for (const t of spans) out.set(t.name, { dtype: t.dtype, shape: t.shape, data: decodeContiguous(buf.subarray(dataStart + t.begin, dataStart + t.end), t.dtype, 0, t.elements) });
  return out;
}

/** Serialises float32 tensors (sorted by name, 8-byte aligned header) in the layout Hugging Face writes. */
export function encodeSafetensors(tensors: Map<string, { shape: number[]; data: Float32Array }>, metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const n of names) {
    const t = tensors.get(n)!;
    header[n] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const n of names) {
    const d = tensors.get(n)!.data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, at);
    at += d.byteLength;
  }
  return out;
}
