import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { WriteError } from '../engine/files.js';
import type { LogEntry } from './train.js';

/** metrics.jsonl step fields and their TensorBoard tags (the names the Hugging Face Trainer logs under). */
const STEP_TAGS = {
  loss: 'train/loss',
  lr: 'train/learning_rate',
  grad_norm: 'train/grad_norm',
  kept_fraction: 'train/kept_fraction',
  examples_per_s: 'train/examples_per_second',
} as const;

/**
 * The scalars one metrics.jsonl entry becomes: its step fields, or `eval/<metric>` for every evaluation metric and
 * `<split>/<metric>` for the other splits evaluated (`test/accuracy`, as the Trainer prefixes a test set's metrics).
 */
export function scalarsOf(e: LogEntry): Record<string, number> {
  if (e.kind === 'eval')
    return Object.fromEntries(
      [['eval', e.metrics ?? {}] as const, ...Object.entries(e.splits ?? {})].flatMap(([prefix, metrics]) =>
        Object.entries(metrics).map(([name, v]) => [`${prefix}/${name}`, v]),
      ),
    );
  return Object.fromEntries(
    Object.entries(STEP_TAGS).flatMap(([field, tag]) => {
      const v = e[field as keyof typeof STEP_TAGS];
      return typeof v === 'number' ? [[tag, v]] : [];
    }),
  );
}

/** TFRecord's checksum: CRC32C, rotated right by 15 bits, plus a constant. */
function maskedCrc(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length (uint64 LE), its masked CRC, the data, the data's masked CRC. */
function tfRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length + 16);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc(data), 12 + data.length);
  return out;
}

/** An `Event` (tensorflow/core/util/event.proto): wall_time = 1, step = 2, then file_version = 3 or summary = 5. */
function event(step: number, what: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.Bit64).double(Date.now() / 1000);
  w.tag(2, WireType.Varint).int64(step);
  what(w);
  return w.finish();
}

/** A `Summary` of `Value { tag = 1, simple_value = 2 }` entries as the Event's summary field. */
const summary = (values: Record<string, number>) => (w: BinaryWriter) => {
  w.tag(5, WireType.LengthDelimited).fork();
  for (const [tag, v] of Object.entries(values))
    w.tag(1, WireType.LengthDelimited)
      .fork()
      .tag(1, WireType.LengthDelimited)
      .string(tag)
      .tag(2, WireType.Bit32)
      .float(v)
      .join();
  w.join();
};

/**
 * Writes a run's metrics as a TensorBoard event file in `runs/<run>/tb/`, entry for entry what metrics.jsonl
 * holds: a resumed run starts a new file from the (cut back) metrics.jsonl, so the two never disagree.
 */
export class TensorBoardWriter {
  private constructor(private readonly file: string) {}

  static create(dir: string, metricsFile: string): TensorBoardWriter {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const writer = new TensorBoardWriter(
      path.join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${os.hostname()}`),
    );
    writer.append(event(0, (w) => w.tag(3, WireType.LengthDelimited).string('brain.Event:2')));
    const history = fs.existsSync(metricsFile) ? fs.readFileSync(metricsFile, 'utf8').split('\n').filter(Boolean) : [];
    for (const line of history) writer.write(JSON.parse(line) as LogEntry);
    return writer;
  }

  write(e: LogEntry) {
    const values = scalarsOf(e);
    if (Object.keys(values).length) this.append(event(e.step, summary(values)));
  }

  private append(data: Uint8Array) {
    try {
      fs.appendFileSync(this.file, tfRecord(data));
    } catch (e) {
      throw new WriteError(this.file, e as NodeJS.ErrnoException);
    }
  }
}
