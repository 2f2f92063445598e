import type { SpecialTokens } from './tokenizer-config.js';

/** BERT's basic tokenizer settings, as BertNormalizer takes them. */
export interface WordPieceJsonSettings {
  lowerCase: boolean;
  /** null: follow lowerCase, as BERT's basic tokenizer does. */
  stripAccents: boolean | null;
  tokenizeChineseChars: boolean;
  special: SpecialTokens;
}

/**
 * tokenizer.json (the Hugging Face tokenizers format, what BertTokenizerFast saves) for a WordPiece vocabulary:
 * BertNormalizer, BertPreTokenizer, the WordPiece model with the whole vocabulary, [CLS] A [SEP] (B [SEP] with
 * type id 1) as the post-processor, the WordPiece decoder, and the special tokens as added tokens. The caller has
 * checked that the vocabulary holds CLS, SEP, UNK and PAD.
 */
export function wordPieceTokenizerJson(vocab: ReadonlyMap<string, number>, s: WordPieceJsonSettings): string {
  const { cls, sep } = s.special;
  const idOf = (t: string) => vocab.get(t)!;
  const specials = [...new Set([s.special.pad, s.special.unk, cls, sep, s.special.mask, ...s.special.additional])]
    .filter((t) => vocab.has(t))
    .sort((a, b) => idOf(a) - idOf(b));
  const token = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const sequence = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: idOf(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: s.tokenizeChineseChars,
      strip_accents: s.stripAccents,
      lowercase: s.lowerCase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [token(cls, 0), sequence('A', 0), token(sep, 0)],
      pair: [token(cls, 0), sequence('A', 0), token(sep, 0), sequence('B', 1), token(sep, 1)],
      special_tokens: Object.fromEntries([cls, sep].map((t) => [t, { id: t, ids: [idOf(t)], tokens: [t] }])),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: s.special.unk,
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries([...vocab].sort((a, b) => a[1] - b[1])),
    },
  };
  return JSON.stringify(json, null, 2) + '\n';
}
