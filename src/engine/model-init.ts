import fs from 'node:fs';
import path from 'node:path';
import { initialValue } from './checkpoint.js';
import { ModelError, parseModelConfig, type Family } from './config.js';
import { EncoderClassifier } from './model.js';
import { WEIGHT_FILES } from './model-files.js';
import { Rng } from './rng.js';
import { saveModel } from './save.js';
import { readWordPieceVocab } from './tokenizer.js';

/** Standard small BERT shapes (Turc et al., "Well-Read Students Learn Better") plus base and large. */
export const SIZES = {
  tiny: { layers: 2, hidden: 128, heads: 2 },
  mini: { layers: 4, hidden: 256, heads: 4 },
  small: { layers: 4, hidden: 512, heads: 8 },
  base: { layers: 12, hidden: 768, heads: 12 },
  large: { layers: 24, hidden: 1024, heads: 16 },
} as const;

/** A small WordPiece vocabulary: specials, ASCII characters, their ## forms and common English words. */
function generatedVocab(): string[] {
  const chars = [...'abcdefghijklmnopqrstuvwxyz0123456789.,!?;:\'"()-'];
  const words =
    'the a an of and to in is it that was for on are with as his they be at one have this from or had by not but what some we can out other were all there when up use your how said each she which do their time if will way about many then them would like so these her long make thing see him two has look more day could go come did no most my over know than call first who may down side been now find any new work part take get place made live where after back little only round man year came show every good me give our under name very through just form much great think say help low line before turn cause same mean differ move right boy old too does tell sentence set three want air well also play small end put home read hand port large spell add even land here must big high such follow act why ask men change went light kind off need house picture try us again animal point mother world near build self earth father movie film story bad best worst funny'.split(
      ' ',
    );
  return [
    '[PAD]',
    ...Array.from({ length: 99 }, (_, i) => `[unused${i}]`),
    '[UNK]',
    '[CLS]',
    '[SEP]',
    '[MASK]',
    ...chars,
    ...chars.map((c) => `##${c}`),
    ...new Set(words),
  ];
}

export function initModelCommand(opts: {
  family: Family;
  size: keyof typeof SIZES;
  vocab?: string;
  labels: number;
  seed: number;
  out: string;
  force?: boolean;
}): string {
  // A directory with a config.json is a model already, weights or not: writing over it would lose it.
  const existing = ['config.json', ...WEIGHT_FILES].filter((f) => fs.existsSync(path.join(opts.out, f)));
  if (existing.length && !opts.force)
    throw new ModelError(
      opts.out,
      `already holds a model (${existing.join(', ')})`,
      'Choose another --out directory, or pass --force to overwrite it.',
    );
  if (opts.family !== 'bert' && !opts.vocab)
    throw new ModelError(
      opts.out,
      `--family ${opts.family} needs --vocab with a WordPiece vocab.txt`,
      'Random-initialised RoBERTa/ELECTRA models still need a tokenizer; pass one.',
    );
  const vocab = opts.vocab ? [...readWordPieceVocab(opts.vocab).keys()] : generatedVocab();
  const s = SIZES[opts.size];
  const config = parseModelConfig(
    {
      model_type: opts.family,
      vocab_size: vocab.length,
      hidden_size: s.hidden,
      num_hidden_layers: s.layers,
      num_attention_heads: s.heads,
      intermediate_size: 4 * s.hidden,
      max_position_embeddings: 512,
      type_vocab_size: opts.family === 'roberta' ? 1 : 2,
      pad_token_id: opts.family === 'roberta' ? 1 : 0,
    },
    '<init>',
    opts.family,
  );
  const model = new EncoderClassifier(config, opts.labels);
  const rng = new Rng(opts.seed);
  model.specs.forEach((spec, i) => (model.values[i] = initialValue(spec, rng)));
  fs.mkdirSync(opts.out, { recursive: true });
  fs.writeFileSync(path.join(opts.out, 'vocab.txt'), vocab.join('\n') + '\n');
  saveModel(model, opts.out);
  return `wrote a random ${opts.family}-${opts.size} (${model.parameterCount.toLocaleString('en-US')} parameters, vocabulary ${vocab.length}) to ${opts.out}`;
}
