#!/usr/bin/env node
// Builds assets/ (what the quickstart needs, shipped inside the repository) from a development checkout's
// ../shared: the small pretrained BERT with its weights stored as F16, the SST-2 dev set unchanged, and the
// 1,000 SST-2 training sentences the quickstart recipe's subsample draws from the full training set, in file
// order, so that the quickstart trains on the same examples whichever copy of SST-2 it reads.
// Run once after `npm run build`: node scripts/make-quickstart-assets.mjs [SHARED_DIR]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../dist/src/engine/safetensors.js';
import { loadSplit } from '../dist/src/data/load.js';
import { subsampleIndices } from '../dist/src/data/subsample.js';
import { TASKS } from '../dist/src/data/tasks.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(process.argv[2] ?? path.join(repo, '..', 'shared'));
const modelIn = path.join(shared, 'fixtures', 'bert-tiny-glue-mlm');
const sst2In = path.join(shared, 'data', 'glue', 'SST-2');
const modelOut = path.join(repo, 'assets', 'bert-tiny-glue-mlm');
const sst2Out = path.join(repo, 'assets', 'data', 'glue', 'SST-2');
/** Must match recipes/quickstart.yaml's dataset.subsample. */
const SUBSAMPLE = { size: 1000, seed: 0, stratified: true };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a float32, rounded to nearest, ties to even (what numpy and torch do). */
function floatToHalf(value) {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - e;
    let half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const tie = 1 << (shift - 1);
    if (rest > tie || (rest === tie && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry rolls into the exponent, as it should
  return sign | half;
}

/** A safetensors file of F16 tensors, names sorted, header padded to 8 bytes (Hugging Face's layout). */
function encodeF16(tensors) {
  const names = [...tensors.keys()].sort();
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const name of names) {
    const bytes = 2 * tensors.get(name).data.length;
    header[name] = { dtype: 'F16', shape: tensors.get(name).shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'utf8');
  let at = 8 + json.length;
  for (const name of names) for (const v of tensors.get(name).data) at = out.writeUInt16LE(floatToHalf(v), at);
  return out;
}

fs.mkdirSync(modelOut, { recursive: true });
fs.writeFileSync(
  path.join(modelOut, 'model.safetensors'),
  encodeF16(readSafetensors(path.join(modelIn, 'model.safetensors'))),
);
// Copied by content, not with copyFileSync: the source files are read-only and their mode must not follow.
const copy = (from, to) => fs.writeFileSync(to, fs.readFileSync(from));
for (const f of ['config.json', 'vocab.txt', 'pretraining.json']) copy(path.join(modelIn, f), path.join(modelOut, f));

fs.mkdirSync(sst2Out, { recursive: true });
copy(path.join(sst2In, 'dev.tsv'), path.join(sst2Out, 'dev.tsv'));
const train = loadSplit(TASKS['glue/sst-2'], sst2In, 'train');
const lines = fs.readFileSync(path.join(sst2In, 'train.tsv'), 'utf8').split('\n');
const chosen = subsampleIndices(train.examples, SUBSAMPLE.size, SUBSAMPLE.seed, SUBSAMPLE.stratified);
const rows = chosen.map((i) => lines[train.examples[i].line - 1]);
fs.writeFileSync(path.join(sst2Out, 'train.tsv'), [lines[0], ...rows].join('\n') + '\n');
console.log(
  `wrote ${path.relative(repo, modelOut)} (F16) and ${path.relative(repo, sst2Out)} (${rows.length} training rows of ${train.examples.length}, the dev set unchanged)`,
);
