import fs from 'node:fs';
import { ChildtuneError } from './errors.js';
import { decodeContiguous, DTYPE_BYTES, isDtype, type Dtype } from './dtype.js';

export class SafetensorsError extends ChildtuneError {
  constructor(
    readonly file: string,
    message: string,
    hint?: string,
  ) {
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
export const isLfsPointer = (buf: Uint8Array) =>
  Buffer.from(buf.subarray(0, 40)).toString('latin1').startsWith('version https://git-lfs');
export const LFS_HINT =
  'The file is a Git LFS pointer, not the weights: run `git lfs pull` in the clone, or fetch the model with `childtune fetch MODEL_ID`.';
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
  if (buf.length < 8)
    throw new SafetensorsError(file, `file is ${buf.length} bytes; too short for a safetensors header (truncated?)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > SAFETENSORS_LIMITS.headerBytes || 8 + headerLength > buf.length) {
    throw new SafetensorsError(
      file,
      `header claims ${headerLength} bytes but the file has ${buf.length - 8} after the length field (truncated or not safetensors)`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, headerLength).toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header))
    throw new SafetensorsError(file, 'header must be a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = buf.length - dataStart;
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
  if (entries.length > SAFETENSORS_LIMITS.tensors)
    throw new SafetensorsError(file, `header lists ${entries.length} tensors (limit ${SAFETENSORS_LIMITS.tensors})`);
  // Every entry is checked against the file, and overlaps ruled out, before anything is decoded: the floats
  // allocated are then bounded by the file's own size, whatever the header claims.
  const spans: {
    begin: number;
    end: number;
    name: string;
    dtype: TensorInfo['dtype'];
    shape: number[];
    elements: number;
  }[] = [];
  for (const [name, raw] of entries) {
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info !== 'object') throw new SafetensorsError(file, `tensor '${name}': entry is not an object`);
    if (!isDtype(info.dtype))
      throw new SafetensorsError(
        file,
        `tensor '${name}': dtype ${JSON.stringify(info.dtype)} is not supported (${Object.keys(DTYPE_BYTES).join(', ')})`,
      );
    const shape = info.shape;
    if (
      !Array.isArray(shape) ||
      shape.length > SAFETENSORS_LIMITS.rank ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new SafetensorsError(
        file,
        `tensor '${name}': shape ${JSON.stringify(shape)} is not a list of at most ${SAFETENSORS_LIMITS.rank} non-negative integers`,
      );
    }
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new SafetensorsError(
        file,
        `tensor '${name}': data_offsets ${JSON.stringify(offsets)} must be [begin, end] with begin <= end`,
      );
    }
    if (offsets[1] > dataLength)
      throw new SafetensorsError(
        file,
        `tensor '${name}': data ends at byte ${offsets[1]} but the file holds ${dataLength} (truncated mid-tensor)`,
      );
    const elements = shape.reduce((a: number, b: number) => a * b, 1);
    const bytes = elements * DTYPE_BYTES[info.dtype];
    if (offsets[1] - offsets[0] !== bytes)
      throw new SafetensorsError(
        file,
        `tensor '${name}': shape ${JSON.stringify(shape)} needs ${bytes} bytes but its offsets span ${offsets[1] - offsets[0]}`,
      );
    spans.push({ begin: offsets[0], end: offsets[1], name, dtype: info.dtype, shape: shape as number[], elements });
  }
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end)
      throw new SafetensorsError(file, `tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
  }
  // The data must be the tensors back to back, as the reference implementation requires: a gap or trailing
  // bytes mean the header does not describe the file (damaged, or written by a tool that breaks the format).
  const damaged = 'Fetch or copy the file again, or re-save it with safetensors (save_file / save_pretrained).';
  let end = 0;
  sorted.forEach((t, i) => {
    if (t.begin !== end)
      throw new SafetensorsError(
        file,
        `data bytes ${end}-${t.begin} ${i === 0 ? `before tensor '${t.name}'` : `between tensors '${sorted[i - 1].name}' and '${t.name}'`} belong to no tensor`,
        damaged,
      );
    end = t.end;
  });
  if (end !== dataLength)
    throw new SafetensorsError(
      file,
      `${dataLength - end} bytes after the last tensor belong to no tensor (the header describes ${end} bytes of data, the file holds ${dataLength})`,
      damaged,
    );
  const out = new Map<string, TensorInfo>();
  for (const t of spans)
    out.set(t.name, {
      dtype: t.dtype,
      shape: t.shape,
      data: decodeContiguous(buf.subarray(dataStart + t.begin, dataStart + t.end), t.dtype, 0, t.elements),
    });
  return out;
}

/** A float32 tensor to write: its values, or a function giving them when their turn comes (see safetensorsChunks). */
export interface TensorToWrite {
  shape: number[];
  data: Float32Array | (() => Float32Array);
}

/**
 * A safetensors file of float32 tensors in the layout Hugging Face writes (sorted by name, header padded to 8 bytes),
 * as chunks: the header, then each tensor's bytes as a view of its own memory, so the file is never held whole (1.3 GB
 * for BERT-large). A tensor given as a function is produced just before its chunk, and its chunk must be consumed
 * before the next is asked for: the function may fill one buffer reused for every tensor.
 */
export function* safetensorsChunks(
  tensors: Map<string, TensorToWrite>,
  metadata: Record<string, string> = { format: 'pt' },
): Generator<Uint8Array> {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const n of names) {
    const { shape } = tensors.get(n)!;
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[n] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  yield Buffer.concat([length, headerBytes]);
  for (const n of names) {
    const { shape, data } = tensors.get(n)!;
    const values = typeof data === 'function' ? data() : data;
    const entry = header[n] as { data_offsets: [number, number] };
    if (values.byteLength !== entry.data_offsets[1] - entry.data_offsets[0])
      throw new RangeError(`tensor ${n}: ${values.length} values for shape [${shape}]`);
    yield new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }
}

/** A whole safetensors file in one buffer, for small files (tests, fixtures); large ones are written chunk by chunk. */
export function encodeSafetensors(
  tensors: Map<string, TensorToWrite>,
  metadata: Record<string, string> = { format: 'pt' },
): Buffer {
  const chunks = safetensorsChunks(tensors, metadata);
  const head = chunks.next().value as Uint8Array;
  const dataBytes = [...tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1) * 4, 0);
  const out = Buffer.alloc(head.length + dataBytes);
  out.set(head);
  let at = head.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
