import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DataFileError } from '../src/data/formats.js';
import { loadSplit } from '../src/data/load.js';
import { TASKS, type TaskSpec } from '../src/data/tasks.js';
import { writeAtomic, WriteError } from '../src/engine/files.js';
import { encodeSafetensors, parseSafetensors, SafetensorsError } from '../src/engine/safetensors.js';
import { tmpProject, write } from './helpers.js';

/** Runs fn, which must either return or throw an error of the expected class, within a time bound. */
function structured(fn: () => unknown, expected: new (...args: never[]) => Error, boundMs = 2000) {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof expected, `unexpected ${(e as Error).constructor.name}: ${(e as Error).message}`);
  }
  assert.ok(performance.now() - t0 < boundMs, 'within the time bound');
}

describe('fuzz: safetensors headers', () => {
  const header = (entries: Record<string, unknown>, dataBytes: number) => {
    const json = Buffer.from(JSON.stringify(entries));
    const out = Buffer.alloc(8 + json.length + dataBytes);
    out.writeBigUInt64LE(BigInt(json.length), 0);
    json.copy(out, 8);
    return out;
  };
  const dim = fc.oneof(fc.nat(8), fc.constantFrom(2 ** 31, 2 ** 53, -1, 1.5), fc.integer());
  const entry = fc.record({
    dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 7, null),
    shape: fc.oneof(fc.array(dim, { maxLength: 10 }), fc.constant('x')),
    data_offsets: fc.oneof(
      fc.tuple(fc.nat(64), fc.nat(64)),
      fc.tuple(fc.constantFrom(0, 2 ** 40), fc.constantFrom(2 ** 53, 2 ** 62)),
      fc.array(fc.integer(), { maxLength: 3 }),
    ),
  });

  test('random headers (bad lengths, huge shapes, overlapping offsets) end in a SafetensorsError, and decoding never outgrows the file', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 4 }), entry, { maxKeys: 6 }),
        fc.nat(128),
        (entries, dataBytes) => {
          const buf = header(entries, dataBytes);
          structured(() => {
            const tensors = parseSafetensors(buf);
            let floats = 0;
            for (const t of tensors.values()) floats += t.data.length;
            assert.ok(floats * 2 <= dataBytes, `decoded ${floats} floats from ${dataBytes} bytes`);
          }, SafetensorsError);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('many tensors pointing at the same bytes are rejected before any is decoded', () => {
    const entries = Object.fromEntries(
      Array.from({ length: 1000 }, (_, i) => [`t${i}`, { dtype: 'F32', shape: [256], data_offsets: [0, 1024] }]),
    );
    assert.throws(() => parseSafetensors(header(entries, 1024)), /overlap/);
  });

  test('byte-level corruption of a valid file (truncation, flipped bytes, a huge length field) is always a SafetensorsError', () => {
    const valid = encodeSafetensors(
      new Map([
        ['a', { shape: [3, 4], data: new Float32Array(12).fill(1) }],
        ['b', { shape: [5], data: new Float32Array(5) }],
      ]),
    );
    fc.assert(
      fc.property(
        fc.nat(valid.length),
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        (cut, flips) => {
          const buf = Buffer.from(valid.subarray(0, cut === valid.length ? valid.length : cut));
          for (const [at, v] of flips) if (at < buf.length) buf[at] = v;
          structured(() => parseSafetensors(buf), SafetensorsError);
        },
      ),
      { numRuns: 400 },
    );
    const huge = Buffer.from(valid);
    huge.writeBigUInt64LE(2n ** 62n, 0);
    assert.throws(() => parseSafetensors(huge), SafetensorsError);
  });
});

describe('fuzz: data files', () => {
  const dir = tmpProject();
  const custom = (format: TaskSpec['format'], header: boolean): TaskSpec => ({
    id: 'custom',
    format,
    header,
    files: { train: `train.${format}` },
    text: header || format === 'jsonl' ? ['text'] : [0],
    label: header || format === 'jsonl' ? 'label' : 1,
    labels: ['neg', 'pos'],
    metrics: ['accuracy'],
  });
  const seeds: [TaskSpec, string][] = [
    [custom('tsv', true), 'text\tlabel\ngood film\tpos\nbad film\tneg\n'],
    [custom('csv', true), 'text,label\n"good, ""really""",pos\n"multi\nline",neg\n'],
    [custom('jsonl', false), '{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n'],
    [
      TASKS['glue/sts-b'],
      'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tmain\tx\t2012\t1\tnone\tnone\ta\tb\t5.000\n',
    ],
  ];

  test('mutated TSV, CSV, JSON-lines and GLUE files load or fail with a DataFileError naming file and line', () => {
    let n = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(
          fc.tuple(
            fc.nat(200),
            fc.nat(6),
            fc.oneof(
              fc.constantFrom('\t', '"', '\n', '\r\n', ',', '{', '}', '\u0000', '\ufeff', 'pos', '-1e999'),
              fc.string({ maxLength: 4 }),
            ),
          ),
          { maxLength: 6 },
        ),
        ([spec, text], edits) => {
          let t = text;
          for (const [at, del, ins] of edits)
            t = t.slice(0, at % (t.length + 1)) + ins + t.slice((at % (t.length + 1)) + del);
          const sub = path.join(dir, String(n++));
          write(sub, spec.files.train, t);
          structured(() => {
            const r = loadSplit(spec, sub, 'train', 'error');
            for (const e of r.examples) assert.ok(spec.labels ? Number.isInteger(e.label) : Number.isFinite(e.label));
          }, DataFileError);
          structured(() => loadSplit(spec, sub, 'train', 'skip'), DataFileError);
        },
      ),
      { numRuns: 300 },
    );
  });
});

test('a full disk while writing is a WriteError naming the file; the previous version survives', (t) => {
  if (!fs.existsSync('/dev/full')) return t.skip('no /dev/full here');
  const dir = tmpProject();
  const file = path.join(dir, 'results.json');
  fs.writeFileSync(file, 'old');
  // The temporary file writeAtomic opens is made to point at /dev/full, which fails every write with ENOSPC.
  fs.symlinkSync('/dev/full', `${file}.tmp-${process.pid}`);
  assert.throws(
    () => writeAtomic(file, 'new'),
    (e: unknown) =>
      e instanceof WriteError &&
      /cannot write .*results\.json: the disk is full/.test(e.message) &&
      /--resume/.test(e.hint),
  );
  assert.equal(fs.readFileSync(file, 'utf8'), 'old');
  assert.ok(!fs.existsSync(`${file}.tmp-${process.pid}`));
});
