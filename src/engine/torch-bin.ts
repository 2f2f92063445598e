import { ModelError } from './config.js';
import { decodeStrided, DTYPE_BYTES, type Dtype } from './dtype.js';
import { describe, PyGlobal, unpickle, type PyValue } from './pickle.js';
import { isLfsPointer, LFS_HINT, type TensorInfo } from './safetensors.js';
import { readStoredZip } from './zip.js';

/** torch's storage classes, by the name its pickles use, and the element type each holds. */
const STORAGE_DTYPES: Record<string, Dtype> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** A storage a tensor views; its bytes are found after the pickle in the legacy format, hence filled in later. */
class Storage {
  bytes?: Uint8Array;
  constructor(
    readonly key: string,
    readonly dtype: Dtype,
    readonly numel: number,
  ) {}
}

/** A tensor of the checkpoint: decoded to float32 only when read, so unused heads cost nothing. */
class StoredTensor implements TensorInfo {
  constructor(
    readonly dtype: Dtype,
    readonly shape: number[],
    private readonly storage: Storage,
    private readonly offset: number,
    private readonly stride: number[],
    private readonly littleEndian: boolean,
  ) {}
  get data(): Float32Array {
    return decodeStrided(this.storage.bytes!, this.dtype, this.offset, this.shape, this.stride, this.littleEndian);
  }
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/**
 * Reads a PyTorch checkpoint (pytorch_model.bin): the zip format torch.save writes since torch 1.6, or the
 * legacy format before it (a magic number, protocol and system-info pickles, the object, then raw storages).
 * The pickles are read by a restricted unpickler that rebuilds tensors and refuses anything else.
 */
export function parseTorchBin(buf: Uint8Array, file: string): Map<string, TensorInfo> {
  const fail = (message: string, hint?: string): never => {
    throw new ModelError(
      file,
      message,
      hint ?? 'Re-save the weights with transformers (model.save_pretrained(dir)), which writes model.safetensors.',
    );
  };
  if (isLfsPointer(buf)) fail('holds a Git LFS pointer instead of tensors', LFS_HINT);
  if (buf.length >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04)
    return readZipFormat(buf, fail);
  if (buf.length >= 2 && buf[0] === 0x80) return readLegacyFormat(buf, fail);
  return fail(
    `is neither a torch zip archive nor a legacy torch pickle (starts with bytes ${Buffer.from(buf.subarray(0, 8)).toString('hex') || '(empty file)'})`,
  );
}

type Fail = (message: string) => never;

function readZipFormat(buf: Uint8Array, fail: Fail): Map<string, TensorInfo> {
  const entries = readStoredZip(buf, fail);
  const pickles = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1)
    fail(`the archive holds ${pickles.length} data.pkl records; a torch checkpoint has exactly one`);
  const root = pickles[0].slice(0, -'data.pkl'.length);
  const order = entries.get(`${root}byteorder`);
  const byteOrder = order ? Buffer.from(order).toString('latin1') : 'little';
  if (byteOrder !== 'little' && byteOrder !== 'big') fail(`its byteorder record says '${byteOrder}'`);
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: PyValue) => {
    const { key, dtype, numel } = storageReference(pid, fail);
    let storage = storages.get(key);
    if (!storage) {
      storage = new Storage(key, dtype, numel);
      storage.bytes = entries.get(`${root}data/${key}`);
      if (!storage.bytes) fail(`storage ${key} is referenced but the archive has no ${root}data/${key} record`);
      if (storage.bytes.length !== numel * DTYPE_BYTES[dtype])
        fail(
          `storage ${key} should hold ${numel} ${dtype} elements (${numel * DTYPE_BYTES[dtype]} bytes) but its record has ${storage.bytes.length} bytes`,
        );
      storages.set(key, storage);
    }
    return storage;
  };
  const { value } = unpickle(entries.get(pickles[0])!, 0, {
    globals: tensorGlobals(byteOrder === 'little', fail),
    persistentLoad,
    fail: (m) => fail(`${pickles[0]}: ${m}`),
  });
  return stateDict(value, fail);
}

function readLegacyFormat(buf: Uint8Array, fail: Fail): Map<string, TensorInfo> {
  const plain = { globals: new Map<string, PyGlobal>(), fail };
  const magic = unpickle(buf, 0, plain);
  if (magic.value !== LEGACY_MAGIC) fail('is a pickle but not a torch checkpoint (no torch magic number)');
  const protocol = unpickle(buf, magic.end, plain);
  if (protocol.value !== LEGACY_PROTOCOL)
    fail(`uses torch serialization protocol ${String(protocol.value)}; only ${LEGACY_PROTOCOL} is known`);
  const sysInfo = unpickle(buf, protocol.end, plain);
  const littleEndian =
    sysInfo.value instanceof Map
      ? sysInfo.value.get('little_endian') !== false
      : fail('has no system-info record after its protocol number');
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: PyValue) => {
    const { key, dtype, numel, view } = storageReference(pid, fail);
    if (view !== null && view !== undefined)
      fail(`storage ${key} is a storage view, written by torch before 1.0; re-save the checkpoint with a recent torch`);
    let storage = storages.get(key);
    if (!storage) storages.set(key, (storage = new Storage(key, dtype, numel)));
    if (storage.dtype !== dtype || storage.numel !== numel)
      fail(`storage ${key} is referenced with two different types or sizes`);
    return storage;
  };
  const object = unpickle(buf, sysInfo.end, { globals: tensorGlobals(littleEndian, fail), persistentLoad, fail });
  const keys = unpickle(buf, object.end, plain);
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string'))
    fail('the list of storage keys after the object is missing or malformed');
  // Each storage follows as an 8-byte element count and its raw elements, in the order of the key list.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = keys.end;
  for (const key of keys.value as string[]) {
    const storage = storages.get(key) ?? fail(`the storage list names ${key}, which no tensor uses`);
    if (at + 8 > buf.length) fail(`the file ends before storage ${key} (truncated)`);
    const count = view.getBigInt64(at, littleEndian);
    if (count !== BigInt(storage.numel))
      fail(`storage ${key} records ${count} elements but its tensors expect ${storage.numel}`);
    const length = storage.numel * DTYPE_BYTES[storage.dtype];
    if (at + 8 + length > buf.length)
      fail(`storage ${key} needs ${length} bytes at byte ${at + 8} but the file ends at ${buf.length} (truncated)`);
    storage.bytes = buf.subarray(at + 8, at + 8 + length);
    at += 8 + length;
  }
  const unfilled = [...storages.values()].find((s) => !s.bytes);
  if (unfilled) fail(`storage ${unfilled.key} is used by a tensor but missing from the file`);
  return stateDict(object.value, fail);
}

/** torch's persistent id for a storage: ('storage', StorageClass, key, location, numel[, view metadata]). */
function storageReference(pid: PyValue, fail: Fail) {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5)
    fail(`a persistent reference is ${describe(pid)}, not a storage reference`);
  const [, type, key, , numel, view] = pid as PyValue[];
  if (!(type instanceof PyGlobal) || !(type.name in STORAGE_DTYPES))
    fail(`a storage has type ${describe(type)}, not a torch storage class`);
  if (typeof key !== 'string') fail('a storage key is not a string');
  if (!Number.isSafeInteger(numel) || (numel as number) < 0) fail(`storage ${key} has size ${String(numel)}`);
  return { key: key as string, dtype: STORAGE_DTYPES[(type as PyGlobal).name], numel: numel as number, view };
}

/** The globals a state dict's pickle may name: its dict class, torch's tensor rebuilds and storage classes. */
function tensorGlobals(littleEndian: boolean, fail: Fail): Map<string, PyGlobal> {
  const rebuild = (name: string, minArgs: number) =>
    new PyGlobal(name, (args) => {
      if (args.length < minArgs) fail(`${name} is called with ${args.length} arguments`);
      const [storage, offset, shape, stride] = args;
      return tensorView(storage, offset, shape, stride, littleEndian, fail);
    });
  const globals = new Map<string, PyGlobal>([
    [
      'collections OrderedDict',
      new PyGlobal('collections.OrderedDict', (args) =>
        args.length === 0 ? new Map() : fail('collections.OrderedDict is called with arguments'),
      ),
    ],
    ['torch._utils _rebuild_tensor_v2', rebuild('torch._utils._rebuild_tensor_v2', 6)],
    ['torch._utils _rebuild_tensor', rebuild('torch._utils._rebuild_tensor', 4)],
    [
      'torch._utils _rebuild_parameter',
      new PyGlobal('torch._utils._rebuild_parameter', (args) =>
        args[0] instanceof StoredTensor
          ? args[0]
          : fail('torch._utils._rebuild_parameter wraps something other than a tensor'),
      ),
    ],
  ]);
  for (const name of Object.keys(STORAGE_DTYPES)) globals.set(`torch ${name}`, new PyGlobal(name));
  return globals;
}

const RANK_LIMIT = 8;

/** Checks a tensor's view against its storage before anything is decoded, so no file can make us allocate more than it holds. */
function tensorView(
  storage: PyValue,
  offset: PyValue,
  shape: PyValue,
  stride: PyValue,
  littleEndian: boolean,
  fail: Fail,
): StoredTensor {
  if (!(storage instanceof Storage)) fail(`a tensor is rebuilt from ${describe(storage)} instead of a storage`);
  const ints = (v: PyValue): v is number[] =>
    Array.isArray(v) && v.length <= RANK_LIMIT && v.every((d) => Number.isSafeInteger(d) && (d as number) >= 0);
  if (
    !Number.isSafeInteger(offset) ||
    (offset as number) < 0 ||
    !ints(shape) ||
    !ints(stride) ||
    shape.length !== stride.length
  ) {
    fail(
      `a tensor of storage ${storage.key} has a malformed view (offset ${String(offset)}, shape ${JSON.stringify(shape)}, stride ${JSON.stringify(stride)})`,
    );
  }
  const s = storage as Storage;
  const dims = shape as number[];
  const steps = stride as number[];
  const count = dims.reduce((a, b) => a * b, 1);
  const last = (offset as number) + dims.reduce((a, d, i) => a + (d - 1) * steps[i], 0);
  if (count > s.numel || (count > 0 && last >= s.numel))
    fail(`a tensor of shape [${dims}] at offset ${offset} reaches past its storage ${s.key} of ${s.numel} elements`);
  return new StoredTensor(s.dtype, dims, s, offset as number, steps, littleEndian);
}

function stateDict(value: PyValue, fail: Fail): Map<string, TensorInfo> {
  if (!(value instanceof Map)) fail(`holds ${describe(value)}, not a state dict (a dict of tensors)`);
  const out = new Map<string, TensorInfo>();
  for (const [key, tensor] of value as Map<PyValue, PyValue>) {
    if (typeof key !== 'string') fail(`a state-dict key is ${describe(key)}, not a name`);
    if (!(tensor instanceof StoredTensor))
      fail(
        `entry '${key}' is ${describe(tensor)}, not a tensor: the file is a training checkpoint or another object, not a model's state dict`,
      );
    out.set(key as string, tensor as StoredTensor);
  }
  return out;
}
