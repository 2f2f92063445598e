import fs from 'node:fs';
import path from 'node:path';

/** The files a model directory's tokenizer may consist of (copied along with saved models, part of the plan's fingerprint). */
export const TOKENIZER_FILES = ['vocab.txt', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export class TokenizerError extends Error {
  constructor(readonly file: string, message: string, readonly hint?: string) {
    super(`${file}: ${message}`);
  }
}

export interface Encoding {
  tokens: string[];
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
}

export interface Tokenizer {
  readonly kind: 'wordpiece' | 'bpe';
  readonly vocabSize: number;
  readonly padId: number;
  /** Sub-word pieces of one text, without special tokens. */
  tokenize(text: string): string[];
  encode(textA: string, textB: string | undefined, maxLength: number, padTo?: number): Encoding;
}

/** Drops tokens from the longer sequence until the pair fits (Hugging Face's longest_first). */
function truncatePair(a: string[], b: string[] | undefined, budget: number) {
  if (!b) return a.length > budget ? a.slice(0, Math.max(0, budget)) : a;
  while (a.length + b.length > budget) {
    if (a.length > b.length) a.pop();
    else b.pop();
  }
  return a;
}

abstract class BaseTokenizer implements Tokenizer {
  abstract readonly kind: 'wordpiece' | 'bpe';
  abstract tokenize(text: string): string[];
  protected abstract readonly special: { cls: string; sep: string; pad: string; pairSep: string[] };
  protected abstract readonly typed: boolean;
  constructor(protected readonly vocab: Map<string, number>, protected readonly unk: string) {}

  get vocabSize() {
    return this.vocab.size;
  }

  get padId() {
    return this.idOf(this.special.pad);
  }

  protected idOf(token: string): number {
    return this.vocab.get(token) ?? this.vocab.get(this.unk) ?? 0;
  }

  encode(textA: string, textB: string | undefined, maxLength: number, padTo = 0): Encoding {
    const { cls, sep, pairSep } = this.special;
    let a = this.tokenize(textA);
    let b = textB === undefined ? undefined : this.tokenize(textB);
    const specials = b ? 2 + pairSep.length : 2;
    a = truncatePair(a, b, maxLength - specials);
    const tokens = [cls, ...a, sep];
    const types = tokens.map(() => 0);
    if (b) {
      const second = [...pairSep.slice(1), ...b, sep];
      tokens.push(...second);
      types.push(...second.map(() => (this.typed ? 1 : 0)));
    }
    const inputIds = tokens.map((t) => this.idOf(t));
    const attentionMask = inputIds.map(() => 1);
    while (inputIds.length < padTo) {
      inputIds.push(this.padId);
      types.push(0);
      attentionMask.push(0);
    }
    return { tokens, inputIds, tokenTypeIds: types, attentionMask };
  }
}

const isWhitespace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || /\p{Zs}/u.test(c);
const isControl = (c: string) => c !== '\t' && c !== '\n' && c !== '\r' && /\p{C}/u.test(c);
const isPunctuation = (c: string) => {
  const cp = c.codePointAt(0)!;
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126) || /\p{P}/u.test(c);
};
const isCjk = (cp: number) =>
  (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
  (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);

/** BERT's WordPiece with its basic tokenizer: cleaning, CJK splitting, lower-casing and accent stripping, punctuation splitting. */
export class WordPieceTokenizer extends BaseTokenizer {
  readonly kind = 'wordpiece' as const;
  protected readonly special = { cls: '[CLS]', sep: '[SEP]', pad: '[PAD]', pairSep: ['[SEP]'] };
  protected readonly typed = true;
  private readonly cache = new Map<string, string[]>();

  constructor(vocab: Map<string, number>, private readonly lowerCase = true, private readonly prefix = '##') {
    super(vocab, '[UNK]');
  }

  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const word of this.basic(text)) {
      let pieces = this.cache.get(word);
      if (!pieces) {
        pieces = this.wordpiece(word);
        if (this.cache.size < 200_000) this.cache.set(word, pieces);
      }
      out.push(...pieces);
    }
    return out;
  }

  private basic(text: string): string[] {
    let clean = '';
    for (const c of text) {
      const cp = c.codePointAt(0)!;
      if (cp === 0 || cp === 0xfffd || isControl(c)) continue;
      if (isWhitespace(c)) clean += ' ';
      else if (isCjk(cp)) clean += ` ${c} `;
      else clean += c;
    }
    const words: string[] = [];
    for (let token of clean.trim().split(/ +/)) {
      if (!token) continue;
      if (this.lowerCase) token = token.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
      let current = '';
      for (const c of token) {
        if (isPunctuation(c)) {
          if (current) words.push(current);
          words.push(c);
          current = '';
        } else current += c;
      }
      if (current) words.push(current);
    }
    return words;
  }

  private wordpiece(word: string): string[] {
    const chars = [...word];
    if (chars.length > 100) return [this.unk];
    const pieces: string[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found: string | undefined;
      while (start < end) {
        const sub = (start > 0 ? this.prefix : '') + chars.slice(start, end).join('');
        if (this.vocab.has(sub)) {
          found = sub;
          break;
        }
        end--;
      }
      if (!found) return [this.unk];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }
}

/** GPT-2's byte-to-printable-character table used by byte-level BPE. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = [];
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i])));
  return table;
}

const BPE_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** RoBERTa's byte-level BPE (vocab.json + merges.txt). */
export class ByteBpeTokenizer extends BaseTokenizer {
  readonly kind = 'bpe' as const;
  protected readonly special = { cls: '<s>', sep: '</s>', pad: '<pad>', pairSep: ['</s>', '</s>'] };
  protected readonly typed = false;
  private readonly byteTable = bytesToUnicode();
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();

  constructor(vocab: Map<string, number>, merges: [string, string][]) {
    super(vocab, '<unk>');
    this.ranks = new Map(merges.map(([a, b], i) => [`${a} ${b}`, i]));
  }

  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const m of text.matchAll(BPE_PATTERN)) {
      const mapped = [...Buffer.from(m[0], 'utf8')].map((b) => this.byteTable[b]).join('');
      let pieces = this.cache.get(mapped);
      if (!pieces) {
        pieces = this.bpe(mapped);
        if (this.cache.size < 200_000) this.cache.set(mapped, pieces);
      }
      out.push(...pieces);
    }
    return out;
  }

  private bpe(word: string): string[] {
    let parts = [...word];
    while (parts.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      const merged = parts[best] + parts[best + 1];
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i < parts.length - 1 && parts[i] + parts[i + 1] === merged && this.ranks.get(`${parts[i]} ${parts[i + 1]}`) === bestRank) {
          next.push(merged);
          i++;
        } else next.push(parts[i]);
      }
      parts = next;
    }
    return parts;
  }
}

function readFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TokenizerError(file, `cannot read (${(e as Error).message})`);
  }
}

export function readWordPieceVocab(file: string): Map<string, number> {
  const vocab = new Map<string, number>();
  const lines = readFile(file).split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const token = line.replace(/\r$/, '');
    if (!vocab.has(token)) vocab.set(token, i);
  });
  if (vocab.size === 0) throw new TokenizerError(file, 'vocabulary is empty');
  for (const t of ['[CLS]', '[SEP]', '[UNK]', '[PAD]']) if (!vocab.has(t)) throw new TokenizerError(file, `vocabulary has no ${t} token`, 'A BERT vocab.txt lists one token per line, including [PAD], [UNK], [CLS] and [SEP].');
  return vocab;
}

/** Tokenizers of this process by directory, options and file identity (sweep trials share one, and its tokenizations). */
const tokenizers = new Map<string, Tokenizer>();

/** Loads the tokenizer a model directory ships: tokenizer.json, vocab.txt (WordPiece) or vocab.json + merges.txt (BPE). */
export function loadTokenizer(dir: string, options: { lowerCase?: boolean } = {}): Tokenizer {
  const identity = ['vocab.txt', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json'].map((f) => fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.mtimeMs ?? '-');
  const key = JSON.stringify([path.resolve(dir), options.lowerCase ?? null, identity]);
  let tokenizer = tokenizers.get(key);
  if (!tokenizer) {
    tokenizer = readTokenizer(dir, options);
    tokenizers.set(key, tokenizer);
  }
  return tokenizer;
}

function readTokenizer(dir: string, options: { lowerCase?: boolean }): Tokenizer {
  const lowerCase = options.lowerCase ?? readLowerCase(dir) ?? true;
  const tj = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(path.join(dir, 'vocab.txt'))) return new WordPieceTokenizer(readWordPieceVocab(path.join(dir, 'vocab.txt')), lowerCase);
  if (fs.existsSync(path.join(dir, 'vocab.json')) && fs.existsSync(path.join(dir, 'merges.txt'))) {
    return new ByteBpeTokenizer(readJsonVocab(path.join(dir, 'vocab.json')), readMerges(path.join(dir, 'merges.txt')));
  }
  if (fs.existsSync(tj)) return fromTokenizerJson(tj, lowerCase);
  throw new TokenizerError(dir, 'no tokenizer found (vocab.txt, vocab.json + merges.txt, or tokenizer.json)', 'Copy the tokenizer files that came with the checkpoint into the model directory.');
}

function readLowerCase(dir: string): boolean | undefined {
  const f = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(f)) return undefined;
  try {
    const v = JSON.parse(fs.readFileSync(f, 'utf8')).do_lower_case;
    return typeof v === 'boolean' ? v : undefined;
  } catch {
    throw new TokenizerError(f, 'not valid JSON');
  }
}

function readJsonVocab(file: string): Map<string, number> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFile(file));
  } catch (e) {
    if (e instanceof TokenizerError) throw e;
    throw new TokenizerError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new TokenizerError(file, 'must map tokens to ids');
  const vocab = new Map<string, number>();
  for (const [k, v] of Object.entries(raw)) {
    if (!Number.isInteger(v)) throw new TokenizerError(file, `token ${JSON.stringify(k)} has id ${JSON.stringify(v)}; ids must be integers`);
    vocab.set(k, v as number);
  }
  return vocab;
}

function readMerges(file: string): [string, string][] {
  const out: [string, string][] = [];
  readFile(file).split('\n').forEach((line, i) => {
    if (!line || line.startsWith('#version')) return;
    const parts = line.replace(/\r$/, '').split(' ');
    if (parts.length !== 2) throw new TokenizerError(`${file}:${i + 1}`, `a merge line holds two symbols separated by one space, found ${JSON.stringify(line)}`);
    out.push([parts[0], parts[1]]);
  });
  return out;
}

function fromTokenizerJson(file: string, lowerCase: boolean): Tokenizer {
  let raw: { model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; continuing_subword_prefix?: string }; normalizer?: { lowercase?: boolean } };
  try {
    raw = JSON.parse(readFile(file));
  } catch (e) {
    if (e instanceof TokenizerError) throw e;
    throw new TokenizerError(file, `not valid JSON (${(e as Error).message})`);
  }
  const model = raw.model;
  if (!model?.vocab || typeof model.vocab !== 'object') throw new TokenizerError(file, 'model.vocab is missing');
  const vocab = new Map(Object.entries(model.vocab));
  if (model.type === 'WordPiece') return new WordPieceTokenizer(vocab, raw.normalizer?.lowercase ?? lowerCase, model.continuing_subword_prefix ?? '##');
  if (model.type === 'BPE') {
    const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m : (m.split(' ') as [string, string])));
    return new ByteBpeTokenizer(vocab, merges);
  }
  throw new TokenizerError(file, `tokenizer model type ${JSON.stringify(model.type)} is not supported (WordPiece, BPE)`);
}
