import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { labelNamesOf } from '../src/data/tasks.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import { readModelConfig } from '../src/engine/config.js';
import { saveModel } from '../src/engine/save.js';
import { cli, FIXTURES, GLUE, tinyModelRecipe, tmpProject } from './helpers.js';
import { metricsLog } from './strategy-checks.js';

const PRETRAINED = path.join(FIXTURES, 'bert-tiny-glue-mlm');

/**
 * What transformers' `save_pretrained` writes for this model fine-tuned with `BertForSequenceClassification`
 * (transformers 4.46: `PretrainedConfig.to_diff_dict`, `json.dumps(indent=2, sort_keys=True)`): every BertConfig
 * attribute, the values that differ from PretrainedConfig's defaults (`_name_or_path`, `architectures`,
 * `id2label`/`label2id`, `pad_token_id`, `problem_type`, which the model sets on its first labelled forward),
 * `torch_dtype` as save_pretrained sets it, and `transformers_version`; never `num_labels` (a property).
 */
const hfConfig = (labels: Record<string, string> | null, problemType: string) => ({
  _name_or_path: PRETRAINED,
  architectures: ['BertForSequenceClassification'],
  attention_probs_dropout_prob: 0.1,
  classifier_dropout: null,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  hidden_size: 128,
  ...(labels
    ? { id2label: labels, label2id: Object.fromEntries(Object.entries(labels).map(([i, l]) => [l, Number(i)])) }
    : {}),
  initializer_range: 0.02,
  intermediate_size: 512,
  layer_norm_eps: 1e-12,
  max_position_embeddings: 512,
  model_type: 'bert',
  num_attention_heads: 2,
  num_hidden_layers: 2,
  pad_token_id: 0,
  position_embedding_type: 'absolute',
  problem_type: problemType,
  torch_dtype: 'float32',
  transformers_version: '4.46.3',
  type_vocab_size: 2,
  use_cache: true,
  vocab_size: 30522,
});

/** Model and tokenizer files of `model.save_pretrained(d); tokenizer.save_pretrained(d)` for BERT (the fast tokenizer, AutoTokenizer's default, adds tokenizer.json). */
const HF_FILES = [
  'config.json',
  'model.safetensors',
  'special_tokens_map.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.txt',
];

describe('the saved model is what save_pretrained writes', () => {
  const save = (numLabels: number, labels?: string[]) => {
    const { model } = loadPretrained(PRETRAINED, { numLabels, seed: 0 });
    const dir = path.join(tmpProject(), 'model');
    saveModel(model, dir, { source: PRETRAINED, labels });
    return { dir, config: JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) };
  };

  test('sequence classification (SST-2): config.json field by field, the file list, label names from the dataset card', () => {
    const labels = labelNamesOf({ task: 'glue/sst-2' } as never);
    assert.deepEqual(labels, ['negative', 'positive']);
    const { dir, config } = save(2, labels);
    assert.deepEqual(config, hfConfig({ 0: 'negative', 1: 'positive' }, 'single_label_classification'));
    assert.deepEqual(Object.keys(config), Object.keys(config).sort(), 'keys sorted, as json.dumps(sort_keys=True)');
    assert.deepEqual(fs.readdirSync(dir).sort(), HF_FILES);
    assert.equal(readModelConfig(dir).numLabels, 2);
  });

  test('regression (STS-B): problem_type regression, one LABEL_0 output', () => {
    assert.equal(labelNamesOf({ task: 'glue/sts-b' } as never), undefined);
    const { dir, config } = save(1, undefined);
    assert.deepEqual(config, hfConfig({ 0: 'LABEL_0' }, 'regression'));
    assert.deepEqual(fs.readdirSync(dir).sort(), HF_FILES);
  });

  test("two unnamed labels are transformers' default and are left out, as to_diff_dict leaves them out", () => {
    assert.deepEqual(save(2, ['LABEL_0', 'LABEL_1']).config, hfConfig(null, 'single_label_classification'));
  });

  test('tokenizer_config.json and special_tokens_map.json are generated when the source has only vocab.txt', () => {
    const { dir } = save(2, ['negative', 'positive']);
    const specials = {
      cls_token: '[CLS]',
      mask_token: '[MASK]',
      pad_token: '[PAD]',
      sep_token: '[SEP]',
      unk_token: '[UNK]',
    };
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'special_tokens_map.json'), 'utf8')), specials);
    const tokenizer = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    const added = (id: number, content: string) => [
      String(id),
      { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
    ];
    assert.deepEqual(tokenizer, {
      added_tokens_decoder: Object.fromEntries([
        added(0, '[PAD]'),
        added(100, '[UNK]'),
        added(101, '[CLS]'),
        added(102, '[SEP]'),
        added(103, '[MASK]'),
      ]),
      clean_up_tokenization_spaces: true,
      do_basic_tokenize: true,
      do_lower_case: true,
      model_max_length: 512,
      never_split: null,
      strip_accents: null,
      tokenize_chinese_chars: true,
      tokenizer_class: 'BertTokenizer',
      ...specials,
    });
    assert.deepEqual(fs.readFileSync(path.join(dir, 'vocab.txt')), fs.readFileSync(path.join(PRETRAINED, 'vocab.txt')));
  });

  test('a tokenizer_config.json the source has is kept as it is', () => {
    const source = path.join(tmpProject(), 'src');
    fs.cpSync(PRETRAINED, source, { recursive: true });
    fs.writeFileSync(path.join(source, 'tokenizer_config.json'), '{"do_lower_case": false, "model_max_length": 128}\n');
    const { model } = loadPretrained(source, { numLabels: 2, seed: 0 });
    const dir = path.join(tmpProject(), 'model');
    saveModel(model, dir, { source });
    assert.equal(
      fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'),
      '{"do_lower_case": false, "model_max_length": 128}\n',
    );
    assert.ok(fs.existsSync(path.join(dir, 'special_tokens_map.json')));
  });
});

/* An independent reader of TensorBoard event files, written from the format's specification. */

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
const masked = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

/** TFRecord framing: uint64 length, uint32 masked CRC of the length bytes, data, uint32 masked CRC of the data. */
function records(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    const length = Number(buf.readBigUInt64LE(at));
    assert.equal(
      buf.readUInt32LE(at + 8),
      masked(crc32c(buf.subarray(at, at + 8))),
      `length CRC of the record at byte ${at}`,
    );
    const data = buf.subarray(at + 12, at + 12 + length);
    assert.equal(buf.readUInt32LE(at + 12 + length), masked(crc32c(data)), `data CRC of the record at byte ${at}`);
    out.push(data);
    at += 16 + length;
  }
  return out;
}

/** Protocol buffer fields: (number, wire type, value) with varints, 64-bit, length-delimited and 32-bit values. */
function fields(buf: Buffer): { field: number; value: bigint | Buffer }[] {
  const out: { field: number; value: bigint | Buffer }[] = [];
  let at = 0;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = buf[at++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const [field, wire] = [key >> 3, key & 7];
    if (wire === 0) out.push({ field, value: varint() });
    else if (wire === 1) {
      out.push({ field, value: buf.subarray(at, at + 8) });
      at += 8;
    } else if (wire === 2) {
      const n = Number(varint());
      out.push({ field, value: buf.subarray(at, at + n) });
      at += n;
    } else if (wire === 5) {
      out.push({ field, value: buf.subarray(at, at + 4) });
      at += 4;
    } else assert.fail(`wire type ${wire}`);
  }
  return out;
}

/** Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5 }; Summary { repeated Value value = 1 }; Value { string tag = 1; float simple_value = 2 }. */
function readEvent(data: Buffer) {
  const e: { wallTime?: number; step: number; fileVersion?: string; scalars: Record<string, number> } = {
    step: 0,
    scalars: {},
  };
  for (const f of fields(data)) {
    if (f.field === 1) e.wallTime = (f.value as Buffer).readDoubleLE(0);
    else if (f.field === 2) e.step = Number(f.value);
    else if (f.field === 3) e.fileVersion = (f.value as Buffer).toString('utf8');
    else if (f.field === 5) {
      for (const v of fields(f.value as Buffer).filter((x) => x.field === 1)) {
        const value = fields(v.value as Buffer);
        const tag = (value.find((x) => x.field === 1)!.value as Buffer).toString('utf8');
        e.scalars[tag] = (value.find((x) => x.field === 2)!.value as Buffer).readFloatLE(0);
      }
    }
  }
  return e;
}

describe('TensorBoard event files', () => {
  test('hold, event by event, the scalars of metrics.jsonl: loss, learning rate, gradient norm, kept fraction, throughput, every eval metric', async () => {
    const recipe = await tinyModelRecipe(`dataset: {task: glue/mrpc, subsample: {size: 32, seed: 0}}
strategy: {kind: child-tuning-f, reserve_p: 0.3}
training: {epochs: 1, batch_size: 8, log_every: 1}
evaluation: {batch_size: 64}
`);
    const r = await cli([
      'run',
      recipe,
      '--set',
      `dataset.dir=${path.join(GLUE, 'MRPC')}`,
      '--set',
      'dataset.eval_split=train',
      '--quiet',
      '--json',
    ]);
    assert.equal(r.code, 0, r.err);
    const [{ dir }] = JSON.parse(r.out);
    const [file, ...others] = fs.readdirSync(path.join(dir, 'tb'));
    assert.deepEqual(others, []);
    assert.match(file, /^events\.out\.tfevents\.\d+\..+/);
    const events = records(fs.readFileSync(path.join(dir, 'tb', file))).map(readEvent);
    assert.equal(events[0].fileVersion, 'brain.Event:2');
    const lines = metricsLog(dir);
    const f32 = (v: number) => Math.fround(v);
    const expected = lines.map((l) => ({
      step: l.step,
      scalars:
        l.kind === 'eval'
          ? Object.fromEntries(
              Object.entries(l.metrics as Record<string, number>).map(([k, v]) => [`eval/${k}`, f32(v)]),
            )
          : {
              'train/loss': f32(l.loss),
              'train/learning_rate': f32(l.lr),
              'train/grad_norm': f32(l.grad_norm),
              'train/kept_fraction': f32(l.kept_fraction),
              'train/examples_per_second': f32(l.examples_per_s),
            },
    }));
    assert.deepEqual(
      events.slice(1).map(({ step, scalars }) => ({ step, scalars })),
      expected,
    );
    assert.deepEqual(Object.keys(expected.at(-1)!.scalars).sort(), ['eval/accuracy', 'eval/f1']);
    assert.ok(events.every((e) => e.wallTime! > 1.7e9));
    // F keeps each element with probability 0.3 over every parameter: millions of draws per window.
    for (const l of lines.filter((x) => x.kind === 'step'))
      assert.ok(Math.abs(l.kept_fraction - 0.3) < 0.01, `kept_fraction ${l.kept_fraction}`);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'config.json'), 'utf8'));
    assert.deepEqual(config.id2label, { 0: 'not_equivalent', 1: 'equivalent' });
    assert.equal(config.problem_type, 'single_label_classification');
  });
});
