import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseModelConfig, type ModelConfig } from '../src/engine/config.js';
import { EncoderClassifier } from '../src/engine/model.js';
import { Rng } from '../src/engine/rng.js';
import { initialValue } from '../src/engine/checkpoint.js';
import { main } from '../src/cli/main.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED = process.env.CHILDTUNE_SHARED ?? path.resolve(REPO, '..', 'shared');
export const GLUE = path.join(SHARED, 'data', 'glue');
export const FIXTURES = path.join(SHARED, 'fixtures');

/** A fresh temporary directory marked as a project root (so recipe paths inside it are allowed). */
export function tmpProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-test-'));
  fs.writeFileSync(path.join(dir, '.childtune-root'), '');
  return dir;
}

export function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** A micro encoder for gradient checks and memory tests. */
export function microModel(opts: { family?: 'bert' | 'roberta' | 'electra'; labels?: number; seed?: number; std?: number; embedding?: number } = {}): EncoderClassifier {
  const config: ModelConfig = parseModelConfig({ model_type: opts.family ?? 'bert', vocab_size: 40, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 16, type_vocab_size: 2, embedding_size: opts.embedding ?? 8, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 }, '<test>');
  const model = new EncoderClassifier(config, opts.labels ?? 3);
  const rng = new Rng(opts.seed ?? 1);
  model.specs.forEach((s, i) => {
    model.values[i] = initialValue(s, rng, opts.std ?? 0.3);
    if (s.init !== 'normal') for (let j = 0; j < model.values[i].length; j++) model.values[i][j] += rng.normal() * 0.1;
  });
  return model;
}

/** Runs the CLI in this process, capturing its output. */
export async function cli(argv: string[]) {
  let out = '', err = '';
  const code = await main(argv, { out: (t) => (out += t + '\n'), err: (t) => (err += t + '\n') });
  return { code, out, err };
}

/** `childtune model init` of a random BERT-tiny with the fixture's vocabulary, into dir. */
export async function tinyModel(dir: string) {
  const r = await cli(['model', 'init', '--size', 'tiny', '--out', dir, '--vocab', path.join(FIXTURES, 'bert-tiny-random', 'vocab.txt')]);
  if (r.code !== 0) throw new Error(r.err);
  return dir;
}
