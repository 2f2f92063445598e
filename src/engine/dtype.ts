/** Element types a checkpoint may store, named as safetensors names them. */
export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<Dtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export const isDtype = (v: unknown): v is Dtype => typeof v === 'string' && Object.hasOwn(DTYPE_BYTES, v);

/** Weights are floating point; integer tensors in checkpoints are buffers (position_ids), never parameters. */
export const isFloatDtype = (d: Dtype) => d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';

/** Every half-precision bit pattern as float32: decoding by lookup is exact and fast. */
let halfTable: Float32Array | undefined;
function halfToFloat32Table(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    halfTable[h] =
      exponent === 0
        ? sign * 2 ** -14 * (fraction / 1024)
        : exponent === 31
          ? fraction
            ? NaN
            : sign * Infinity
          : sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return halfTable;
}

/** Reads element i of a buffer as a number, whatever its stored type. */
export function elementReader(bytes: Uint8Array, dtype: Dtype, littleEndian = true): (i: number) => number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bf16 = new Uint32Array(1);
  const bf16f = new Float32Array(bf16.buffer);
  switch (dtype) {
    case 'F64':
      return (i) => view.getFloat64(8 * i, littleEndian);
    case 'F32':
      return (i) => view.getFloat32(4 * i, littleEndian);
    case 'F16': {
      const table = halfToFloat32Table();
      return (i) => table[view.getUint16(2 * i, littleEndian)];
    }
    case 'BF16':
      return (i) => ((bf16[0] = view.getUint16(2 * i, littleEndian) << 16), bf16f[0]);
    case 'I64':
      return (i) => Number(view.getBigInt64(8 * i, littleEndian));
    case 'I32':
      return (i) => view.getInt32(4 * i, littleEndian);
    case 'I16':
      return (i) => view.getInt16(2 * i, littleEndian);
    case 'I8':
      return (i) => view.getInt8(i);
    case 'U8':
    case 'BOOL':
      return (i) => view.getUint8(i);
  }
}

/** Decodes `count` contiguous elements starting at element `start` into float32. */
export function decodeContiguous(
  bytes: Uint8Array,
  dtype: Dtype,
  start: number,
  count: number,
  littleEndian = true,
): Float32Array {
  const size = DTYPE_BYTES[dtype];
  const region = bytes.subarray(start * size, (start + count) * size);
  if (region.length !== count * size)
    throw new RangeError(`decode past the end of the data (${(start + count) * size} > ${bytes.length} bytes)`);
  const out = new Float32Array(count);
  if (dtype === 'F32' && littleEndian) {
    new Uint8Array(out.buffer).set(region);
    return out;
  }
  const read = elementReader(region, dtype, littleEndian);
  for (let i = 0; i < count; i++) out[i] = read(i);
  return out;
}

/** Decodes a strided view (torch tensors may be non-contiguous views of a shared storage) into a dense float32 array. */
export function decodeStrided(
  bytes: Uint8Array,
  dtype: Dtype,
  offset: number,
  shape: number[],
  stride: number[],
  littleEndian = true,
): Float32Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (isContiguous(shape, stride)) return decodeContiguous(bytes, dtype, offset, count, littleEndian);
  const read = elementReader(bytes, dtype, littleEndian);
  const out = new Float32Array(count);
  const index = new Array<number>(shape.length).fill(0);
  let at = offset;
  for (let i = 0; i < count; i++) {
    out[i] = read(at);
    // Advance the multi-index like an odometer, keeping the storage position in step.
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) {
        at += stride[d];
        break;
      }
      at -= (shape[d] - 1) * stride[d];
      index[d] = 0;
    }
  }
  return out;
}

export function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}
