import zlib from 'node:zlib';

/**
 * The entries of a zip archive whose entries are stored (not compressed), as torch.save writes them, as views into
 * the archive's bytes. Written here rather than taken from a zip library because every offset and size must be
 * checked against the file (the archive may be hostile or truncated), entries must not be copied (checkpoints are
 * gigabytes), and ZIP64 (archives over 4 GiB) must be read exactly.
 */
export function readStoredZip(buf: Uint8Array, fail: (message: string) => never): Map<string, Uint8Array> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`a ZIP64 field holds ${v}, beyond any real file`);
    return Number(v);
  };
  const within = (at: number, length: number, what: string) => {
    if (!(at >= 0 && length >= 0 && at + length <= buf.length))
      fail(
        `${what} lies outside the file (byte ${at}, ${length} bytes; the file has ${buf.length}): truncated or corrupt`,
      );
  };

  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  let end = -1;
  for (let at = buf.length - 22; at >= Math.max(0, buf.length - 22 - 0xffff); at--) {
    if (u32(at) === 0x06054b50) {
      end = at;
      break;
    }
  }
  if (end < 0) fail('no zip end-of-central-directory record: the archive is truncated or not a zip file');
  let count = u16(end + 10);
  let directorySize = u32(end + 12);
  let directoryAt = u32(end + 16);
  if (count === 0xffff || directorySize === 0xffffffff || directoryAt === 0xffffffff) {
    within(end - 20, 20, 'the ZIP64 locator');
    if (u32(end - 20) !== 0x07064b50) fail('the archive needs a ZIP64 locator but has none');
    const record = u64(end - 12);
    within(record, 56, 'the ZIP64 end record');
    if (u32(record) !== 0x06064b50) fail('the ZIP64 locator points at no ZIP64 end record');
    count = u64(record + 32);
    directorySize = u64(record + 40);
    directoryAt = u64(record + 48);
  }
  within(directoryAt, directorySize, 'the central directory');

  const entries = new Map<string, Uint8Array>();
  let at = directoryAt;
  for (let n = 0; n < count; n++) {
    within(at, 46, `central directory entry ${n}`);
    if (u32(at) !== 0x02014b50) fail(`central directory entry ${n} has a bad signature`);
    const method = u16(at + 10);
    const crc = u32(at + 16);
    let compressed = u32(at + 20);
    let size = u32(at + 24);
    const nameLength = u16(at + 28);
    const extraLength = u16(at + 30);
    const commentLength = u16(at + 32);
    let local = u32(at + 42);
    within(at + 46, nameLength + extraLength + commentLength, `central directory entry ${n}`);
    const name = Buffer.from(buf.subarray(at + 46, at + 46 + nameLength)).toString('utf8');
    // ZIP64 extra field: 64-bit values for exactly those of the three fields that hold 0xffffffff, in this order.
    for (let x = at + 46 + nameLength; x + 4 <= at + 46 + nameLength + extraLength; x += 4 + u16(x + 2)) {
      if (u16(x) !== 0x0001) continue;
      let field = x + 4;
      const next = () => {
        within(field, 8, `the ZIP64 field of ${name}`);
        const v = u64(field);
        field += 8;
        return v;
      };
      if (size === 0xffffffff) size = next();
      if (compressed === 0xffffffff) compressed = next();
      if (local === 0xffffffff) local = next();
    }
    if (method !== 0 || compressed !== size)
      fail(
        `entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed, so this archive was rewritten by another tool`,
      );
    within(local, 30, `the local header of ${name}`);
    if (u32(local) !== 0x04034b50) fail(`the local header of ${name} has a bad signature`);
    const dataAt = local + 30 + u16(local + 26) + u16(local + 28);
    within(dataAt, size, `the data of ${name}`);
    const data = buf.subarray(dataAt, dataAt + size);
    // zlib.crc32 is in Node from 20.15; where it is missing, the sizes above are the only check.
    if (typeof zlib.crc32 === 'function' && zlib.crc32(data) !== crc)
      fail(`entry ${name} fails its CRC-32 check: the file is corrupt`);
    entries.set(name, data);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}
