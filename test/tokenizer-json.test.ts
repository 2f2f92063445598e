import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { saveModel } from '../src/engine/save.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { FIXTURES, microModel, tmpProject } from './helpers.js';

test('a saved WordPiece model has tokenizer.json (the fast tokenizer) with the whole vocabulary, and reads back the same', () => {
  const dir = path.join(tmpProject(), 'saved');
  fs.mkdirSync(dir);
  const vocabFile = path.join(FIXTURES, 'bert-tiny-random', 'vocab.txt');
  fs.copyFileSync(vocabFile, path.join(dir, 'vocab.txt'));
  saveModel(microModel(), dir);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const lines = fs
    .readFileSync(vocabFile, 'utf8')
    .split('\n')
    .filter((l, i, all) => i < all.length - 1 || l !== '');
  assert.equal(Object.keys(json.model.vocab).length, new Set(lines).size);
  assert.deepEqual(
    [json.model.type, json.model.unk_token, json.model.continuing_subword_prefix, json.model.max_input_chars_per_word],
    ['WordPiece', '[UNK]', '##', 100],
  );
  assert.deepEqual(
    json.added_tokens.map((t: { id: number; content: string; special: boolean }) => [t.id, t.content, t.special]),
    [
      [0, '[PAD]', true],
      [100, '[UNK]', true],
      [101, '[CLS]', true],
      [102, '[SEP]', true],
      [103, '[MASK]', true],
    ],
  );
  assert.deepEqual(json.normalizer, {
    type: 'BertNormalizer',
    clean_text: true,
    handle_chinese_chars: true,
    strip_accents: null,
    lowercase: true,
  });
  assert.equal(json.pre_tokenizer.type, 'BertPreTokenizer');
  assert.deepEqual(json.post_processor.special_tokens['[CLS]'].ids, [101]);
  assert.deepEqual(json.post_processor.special_tokens['[SEP]'].ids, [102]);
  assert.deepEqual(json.post_processor.pair.at(-1), { SpecialToken: { id: '[SEP]', type_id: 1 } });
  assert.deepEqual([json.truncation, json.padding, json.decoder.type], [null, null, 'WordPiece']);

  // Read with tokenizer.json alone, the model encodes as with vocab.txt.
  const fast = path.join(tmpProject(), 'fast');
  fs.mkdirSync(fast);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(dir, f), path.join(fast, f));
  const [slow, viaJson] = [loadTokenizer(dir), loadTokenizer(fast)];
  for (const [a, b] of [
    ['Héllo, WORLD! unaffable [MASK] 北京', 'a [SEP] b'],
    ['a', undefined],
  ] as const)
    assert.deepEqual(viaJson.encode(a, b, 16), slow.encode(a, b, 16), a);
});
