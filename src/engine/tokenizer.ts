import fs from 'node:fs';
import path from 'node:path';
import { readTokenizerConfig, TokenizerError, type SpecialTokens } from './tokenizer-config.js';

// Defined beside the config reader, which tokenizers build on; named here too, where the rest of the code looks.
export { TokenizerError, type SpecialTokens } from './tokenizer-config.js';

/** The files a model directory's tokenizer may consist of (copied along with saved models, part of the plan's fingerprint). */
export const TOKENIZER_FILES = [
  'vocab.txt',
  'vocab.json',
  'merges.txt',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
];

export interface Encoding {
  tokens: string[];
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
}

export const WORDPIECE_SPECIALS: SpecialTokens = {
  cls: '[CLS]',
  sep: '[SEP]',
  pad: '[PAD]',
  unk: '[UNK]',
  mask: '[MASK]',
  additional: [],
};
export const BPE_SPECIALS: SpecialTokens = {
  cls: '<s>',
  sep: '</s>',
  pad: '<pad>',
  unk: '<unk>',
  mask: '<mask>',
  additional: [],
};

export interface TokenizerOptions {
  special: SpecialTokens;
  /** tokenizer_config.json's model_max_length: longer inputs have no position embeddings. */
  modelMaxLength: number;
  /** The file that set modelMaxLength, for the error that cites it. */
  source: string;
}

export interface Tokenizer {
  readonly kind: 'wordpiece' | 'bpe';
  readonly vocabSize: number;
  readonly padId: number;
  readonly modelMaxLength: number;
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
  /** Separators between the two texts of a pair: BERT's [SEP], RoBERTa's </s></s>. */
  protected abstract readonly pairSep: string[];
  protected abstract readonly typed: boolean;
  protected readonly special: SpecialTokens;
  /** Matches the special tokens, longest first, to keep them whole inside a text. */
  private readonly splitter?: RegExp;

  constructor(
    protected readonly vocab: Map<string, number>,
    private readonly options: TokenizerOptions,
  ) {
    this.special = options.special;
    const { additional, ...named } = options.special;
    const specials = new Set([...Object.values(named), ...additional].filter((t) => t));
    const escaped = [...specials]
      .sort((a, b) => b.length - a.length)
      .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    if (escaped.length) this.splitter = new RegExp(`(${escaped.join('|')})`);
  }

  get vocabSize() {
    return this.vocab.size;
  }

  get padId() {
    return this.idOf(this.special.pad);
  }

  get modelMaxLength() {
    return this.options.modelMaxLength;
  }

  protected get unk() {
    return this.special.unk;
  }

  protected idOf(token: string): number {
    return this.vocab.get(token) ?? this.vocab.get(this.unk)!;
  }

  /** Pieces of one text: special tokens in it stay whole (as transformers keeps them), the rest is split by the model. */
  tokenize(text: string): string[] {
    if (!this.splitter) return this.split(text);
    return text.split(this.splitter).flatMap((part, i) => (i % 2 ? [part] : part ? this.split(part) : []));
  }

  protected abstract split(text: string): string[];

  encode(textA: string, textB: string | undefined, maxLength: number, padTo = 0): Encoding {
    if (maxLength > this.modelMaxLength) {
      throw new TokenizerError(
        this.options.source,
        `a maximum length of ${maxLength} tokens exceeds the tokenizer's model_max_length ${this.modelMaxLength}`,
        `Lower model.max_seq_length (or --max-length) to at most ${this.modelMaxLength}: the model has no positions beyond it.`,
      );
    }
    const { cls, sep } = this.special;
    const pairSep = this.pairSep;
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
  return (
    (cp >= 33 && cp <= 47) ||
    (cp >= 58 && cp <= 64) ||
    (cp >= 91 && cp <= 96) ||
    (cp >= 123 && cp <= 126) ||
    /\p{P}/u.test(c)
  );
};
const isCjk = (cp: number) =>
  (cp >= 0x4e00 && cp <= 0x9fff) ||
  (cp >= 0x3400 && cp <= 0x4dbf) ||
  (cp >= 0x20000 && cp <= 0x2a6df) ||
  (cp >= 0x2a700 && cp <= 0x2b73f) ||
  (cp >= 0x2b740 && cp <= 0x2b81f) ||
  (cp >= 0x2b820 && cp <= 0x2ceaf) ||
  (cp >= 0xf900 && cp <= 0xfaff) ||
  (cp >= 0x2f800 && cp <= 0x2fa1f);

/** BasicTokenizer's settings, as tokenizer_config.json (or tokenizer.json's BertNormalizer) gives them. */
export interface WordPieceOptions extends TokenizerOptions {
  lowerCase: boolean;
  /** null: strip accents exactly when lower-casing (BERT's default). */
  stripAccents: boolean | null;
  tokenizeChineseChars: boolean;
  prefix: string;
  maxInputCharsPerWord: number;
}

/** BERT's WordPiece with its basic tokenizer: cleaning, CJK splitting, lower-casing and accent stripping, punctuation splitting. */
export class WordPieceTokenizer extends BaseTokenizer {
  readonly kind = 'wordpiece' as const;
  protected readonly pairSep: string[];
  protected readonly typed = true;
  private readonly cache = new Map<string, string[]>();

  constructor(
    vocab: Map<string, number>,
    private readonly settings: WordPieceOptions,
  ) {
    super(vocab, settings);
    this.pairSep = [settings.special.sep];
  }

  protected split(text: string): string[] {
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
      else if (this.settings.tokenizeChineseChars && isCjk(cp)) clean += ` ${c} `;
      else clean += c;
    }
    const words: string[] = [];
    for (let token of clean.trim().split(/ +/)) {
      if (!token) continue;
      if (this.settings.lowerCase) token = token.toLowerCase();
      if (this.settings.stripAccents ?? this.settings.lowerCase) token = token.normalize('NFD').replace(/\p{Mn}/gu, '');
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
    if (chars.length > this.settings.maxInputCharsPerWord) return [this.unk];
    const pieces: string[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found: string | undefined;
      while (start < end) {
        const sub = (start > 0 ? this.settings.prefix : '') + chars.slice(start, end).join('');
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
  protected readonly pairSep: string[];
  protected readonly typed = false;
  private readonly byteTable = bytesToUnicode();
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();

  constructor(
    vocab: Map<string, number>,
    merges: [string, string][],
    private readonly settings: TokenizerOptions & { addPrefixSpace: boolean } = {
      special: BPE_SPECIALS,
      modelMaxLength: Infinity,
      source: '<memory>',
      addPrefixSpace: false,
    },
  ) {
    super(vocab, settings);
    this.pairSep = [settings.special.sep, settings.special.sep];
    this.ranks = new Map(merges.map(([a, b], i) => [`${a} ${b}`, i]));
  }

  protected split(text: string): string[] {
    const out: string[] = [];
    // add_prefix_space: the first word is encoded like every later one, after a space.
    const spaced = this.settings.addPrefixSpace && !/^\s/.test(text) ? ` ${text}` : text;
    for (const m of spaced.matchAll(BPE_PATTERN)) {
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
        if (
          i < parts.length - 1 &&
          parts[i] + parts[i + 1] === merged &&
          this.ranks.get(`${parts[i]} ${parts[i + 1]}`) === bestRank
        ) {
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

export function readWordPieceVocab(file: string, special: SpecialTokens = WORDPIECE_SPECIALS): Map<string, number> {
  const vocab = new Map<string, number>();
  const lines = readFile(file).split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const token = line.replace(/\r$/, '');
    if (!vocab.has(token)) vocab.set(token, i);
  });
  if (vocab.size === 0) throw new TokenizerError(file, 'vocabulary is empty');
  for (const t of [special.cls, special.sep, special.unk, special.pad]) {
    if (!vocab.has(t))
      throw new TokenizerError(
        file,
        `vocabulary has no ${t} token`,
        `A BERT vocab.txt lists one token per line, including ${[special.pad, special.unk, special.cls, special.sep].join(', ')} (the special tokens tokenizer_config.json names).`,
      );
  }
  return vocab;
}

/** Tokenizers of this process by directory, options and file identity (sweep trials share one, and its tokenizations). */
const tokenizers = new Map<string, Tokenizer>();

/**
 * Loads the tokenizer a model directory ships, as transformers' slow tokenizers read it: vocab.txt (WordPiece) or
 * vocab.json + merges.txt (byte-level BPE), else tokenizer.json; with the settings and special tokens of
 * tokenizer_config.json and special_tokens_map.json. `lowerCase` (config.json's do_lower_case) overrides them.
 */
export function loadTokenizer(dir: string, options: { lowerCase?: boolean } = {}): Tokenizer {
  const identity = TOKENIZER_FILES.map(
    (f) => fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.mtimeMs ?? '-',
  );
  const key = JSON.stringify([path.resolve(dir), options.lowerCase ?? null, identity]);
  let tokenizer = tokenizers.get(key);
  if (!tokenizer) {
    tokenizer = readTokenizer(dir, options);
    tokenizers.set(key, tokenizer);
  }
  return tokenizer;
}

/** What tokenizer.json adds to a vocabulary and the configuration files: its normaliser's and pre-tokeniser's settings, special tokens. */
type Defaults = {
  lowerCase?: boolean;
  stripAccents?: boolean | null;
  tokenizeChineseChars?: boolean;
  addPrefixSpace?: boolean;
  special?: Partial<SpecialTokens>;
  prefix?: string;
  maxInputCharsPerWord?: number;
};

function readTokenizer(dir: string, options: { lowerCase?: boolean }): Tokenizer {
  const config = readTokenizerConfig(dir);
  const base = { modelMaxLength: config.modelMaxLength ?? Infinity, source: config.source };
  const specials = (defaults: SpecialTokens, fromJson: Partial<SpecialTokens> = {}): SpecialTokens => ({
    ...defaults,
    ...fromJson,
    ...config.special,
    additional: [...new Set([...(fromJson.additional ?? []), ...(config.special.additional ?? [])])],
  });
  const wordPiece = (file: string, vocab: Map<string, number>, json: Defaults = {}) =>
    new WordPieceTokenizer(vocab, {
      ...base,
      special: requireSpecials(file, vocab, specials(WORDPIECE_SPECIALS, json.special)),
      lowerCase: options.lowerCase ?? config.doLowerCase ?? json.lowerCase ?? true,
      stripAccents: config.stripAccents !== undefined ? config.stripAccents : (json.stripAccents ?? null),
      tokenizeChineseChars: config.tokenizeChineseChars ?? json.tokenizeChineseChars ?? true,
      prefix: json.prefix ?? '##',
      maxInputCharsPerWord: json.maxInputCharsPerWord ?? 100,
    });
  const bpe = (file: string, vocab: Map<string, number>, merges: [string, string][], json: Defaults = {}) =>
    new ByteBpeTokenizer(vocab, merges, {
      ...base,
      special: requireSpecials(file, vocab, specials(BPE_SPECIALS, json.special)),
      addPrefixSpace: config.addPrefixSpace ?? json.addPrefixSpace ?? false,
    });

  const file = (name: string) => path.join(dir, name);
  if (fs.existsSync(file('vocab.txt')))
    return wordPiece(file('vocab.txt'), readWordPieceVocab(file('vocab.txt'), specials(WORDPIECE_SPECIALS)));
  if (fs.existsSync(file('vocab.json')) && fs.existsSync(file('merges.txt')))
    return bpe(file('vocab.json'), readJsonVocab(file('vocab.json')), readMerges(file('merges.txt')));
  if (fs.existsSync(file('tokenizer.json'))) {
    const source = file('tokenizer.json');
    const json = readTokenizerJson(source);
    return json.merges
      ? bpe(source, json.vocab, json.merges, json.defaults)
      : wordPiece(source, json.vocab, json.defaults);
  }
  throw new TokenizerError(
    dir,
    'no tokenizer found (vocab.txt, vocab.json + merges.txt, or tokenizer.json)',
    'Copy the tokenizer files that came with the checkpoint into the model directory, or fetch the model with `childtune fetch MODEL_ID`.',
  );
}

/**
 * The special tokens every encoding holds must be in the vocabulary: a missing one has no id, and reading it as
 * [UNK]'s (or 0) would train on inputs that are all one token.
 */
function requireSpecials(file: string, vocab: Map<string, number>, special: SpecialTokens): SpecialTokens {
  const missing = [special.cls, special.sep, special.unk, special.pad].filter((t) => !vocab.has(t));
  if (missing.length)
    throw new TokenizerError(
      file,
      `vocabulary has no ${missing.join(', ')} token${missing.length > 1 ? 's' : ''} (the special tokens every encoding uses)`,
      `Use the tokenizer files that came with the checkpoint; their vocabulary holds ${[special.cls, special.sep, special.unk, special.pad].join(', ')} (the special tokens tokenizer_config.json, special_tokens_map.json or tokenizer.json name).`,
    );
  return special;
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
  return vocabFrom(raw as Record<string, unknown>, file);
}

function vocabFrom(raw: Record<string, unknown>, file: string): Map<string, number> {
  const vocab = new Map<string, number>();
  for (const [k, v] of Object.entries(raw)) {
    if (!Number.isInteger(v))
      throw new TokenizerError(file, `token ${JSON.stringify(k)} has id ${JSON.stringify(v)}; ids must be integers`);
    vocab.set(k, v as number);
  }
  return vocab;
}

function readMerges(file: string): [string, string][] {
  const out: [string, string][] = [];
  readFile(file)
    .split('\n')
    .forEach((line, i) => {
      if (!line || line.startsWith('#version')) return;
      const parts = line.replace(/\r$/, '').split(' ');
      if (parts.length !== 2)
        throw new TokenizerError(
          `${file}:${i + 1}`,
          `a merge line holds two symbols separated by one space, found ${JSON.stringify(line)}`,
        );
      out.push([parts[0], parts[1]]);
    });
  return out;
}

interface TokenizerJson {
  normalizer?: {
    type?: string;
    lowercase?: boolean;
    strip_accents?: boolean | null;
    handle_chinese_chars?: boolean;
    normalizers?: { type?: string }[];
  } | null;
  pre_tokenizer?: {
    type?: string;
    add_prefix_space?: boolean;
    pretokenizers?: { type?: string; add_prefix_space?: boolean }[];
  } | null;
  post_processor?: {
    type?: string;
    cls?: [string, number];
    sep?: [string, number];
    single?: { SpecialToken?: { id?: string } }[];
  } | null;
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: (string | [string, string])[];
    continuing_subword_prefix?: string | null;
    unk_token?: string | null;
    max_input_chars_per_word?: number;
  };
  added_tokens?: { id?: number; content?: string }[];
}

/** The parts of a Hugging Face tokenizers file that BERT, RoBERTa and ELECTRA use. */
function readTokenizerJson(file: string): {
  vocab: Map<string, number>;
  merges?: [string, string][];
  defaults: Defaults;
} {
  let raw: TokenizerJson;
  try {
    raw = JSON.parse(readFile(file));
  } catch (e) {
    if (e instanceof TokenizerError) throw e;
    throw new TokenizerError(file, `not valid JSON (${(e as Error).message})`);
  }
  const model = raw.model;
  if (!model?.vocab || typeof model.vocab !== 'object') throw new TokenizerError(file, 'model.vocab is missing');
  if (model.type !== 'WordPiece' && model.type !== 'BPE')
    throw new TokenizerError(
      file,
      `tokenizer model type ${JSON.stringify(model.type)} is not supported (WordPiece, BPE)`,
    );
  const vocab = vocabFrom(model.vocab, file);
  // Added tokens are kept whole in a text and may lie outside the model's vocabulary.
  const added: string[] = [];
  for (const t of raw.added_tokens ?? []) {
    if (typeof t.content !== 'string' || !Number.isInteger(t.id))
      throw new TokenizerError(file, `added token ${JSON.stringify(t)} needs a content string and an integer id`);
    if (!vocab.has(t.content)) vocab.set(t.content, t.id!);
    added.push(t.content);
  }
  const special: Partial<SpecialTokens> = { additional: added };
  const post = raw.post_processor;
  if (post?.cls?.[0] && post.sep?.[0]) Object.assign(special, { cls: post.cls[0], sep: post.sep[0] });
  else if (post?.type === 'TemplateProcessing' && Array.isArray(post.single)) {
    const ids = post.single.map((p) => p.SpecialToken?.id).filter((id): id is string => typeof id === 'string');
    if (ids.length >= 2) Object.assign(special, { cls: ids[0], sep: ids[ids.length - 1] });
  }
  if (model.unk_token) special.unk = model.unk_token;
  const defaults: Defaults = {
    special,
    prefix: model.continuing_subword_prefix ?? undefined,
    maxInputCharsPerWord: model.max_input_chars_per_word,
  };
  const norm = raw.normalizer;
  if (norm?.type === 'Sequence') {
    const types = (norm.normalizers ?? []).map((n) => n.type);
    Object.assign(defaults, { lowerCase: types.includes('Lowercase'), stripAccents: types.includes('StripAccents') });
  } else if (norm)
    Object.assign(defaults, {
      lowerCase: norm.lowercase,
      stripAccents: norm.strip_accents,
      tokenizeChineseChars: norm.handle_chinese_chars,
    });
  const pre = raw.pre_tokenizer;
  const byteLevel = pre?.type === 'ByteLevel' ? pre : pre?.pretokenizers?.find((p) => p.type === 'ByteLevel');
  if (byteLevel) defaults.addPrefixSpace = byteLevel.add_prefix_space;
  if (model.type === 'WordPiece') return { vocab, defaults };
  const merges = (model.merges ?? []).map((m, i): [string, string] => {
    const pair = Array.isArray(m) ? m : m.split(' ');
    if (pair.length !== 2) throw new TokenizerError(file, `merge ${i} holds ${JSON.stringify(m)}, not two symbols`);
    return [pair[0], pair[1]];
  });
  return { vocab, merges, defaults };
}
