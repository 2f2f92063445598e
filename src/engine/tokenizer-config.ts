import fs from 'node:fs';
import path from 'node:path';
import { ChildtuneError } from './errors.js';

export class TokenizerError extends ChildtuneError {
  constructor(
    readonly file: string,
    message: string,
    hint?: string,
  ) {
    super('tokenizer', `${file}: ${message}`, { hint });
  }
}

/** The special tokens a tokenizer adds and never splits, as tokenizer_config.json and special_tokens_map.json name them. */
export interface SpecialTokens {
  cls: string;
  sep: string;
  pad: string;
  unk: string;
  mask: string;
  /** additional_special_tokens and tokenizer.json's special added tokens: kept whole when they occur in a text. */
  additional: string[];
}

/** What tokenizer_config.json and special_tokens_map.json say, each field absent where neither file sets it. */
export interface TokenizerConfig {
  doLowerCase?: boolean;
  stripAccents?: boolean | null;
  tokenizeChineseChars?: boolean;
  addPrefixSpace?: boolean;
  modelMaxLength?: number;
  special: Partial<SpecialTokens>;
  /** The file to cite about model_max_length. */
  source: string;
}

/** transformers writes this sentinel (int(1e30)) for "no limit". */
const NO_LIMIT = 1e29;

const SPECIAL_KEYS = {
  cls: 'cls_token',
  sep: 'sep_token',
  pad: 'pad_token',
  unk: 'unk_token',
  mask: 'mask_token',
} as const;

/**
 * Reads a model directory's tokenizer settings as transformers does: tokenizer_config.json, then
 * special_tokens_map.json, whose special tokens take precedence. A special token is a string or an AddedToken
 * object ({"content": "[CLS]", ...}).
 */
export function readTokenizerConfig(dir: string): TokenizerConfig {
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = readJsonObject(configFile);
  const map = readJsonObject(path.join(dir, 'special_tokens_map.json'));
  const special: Partial<SpecialTokens> = {};
  for (const [file, raw] of [
    [configFile, config],
    [path.join(dir, 'special_tokens_map.json'), map],
  ] as const) {
    if (!raw) continue;
    for (const [key, field] of Object.entries(SPECIAL_KEYS) as [keyof typeof SPECIAL_KEYS, string][]) {
      if (raw[field] !== undefined && raw[field] !== null) special[key] = tokenText(raw[field], field, file);
    }
    const additional = raw.additional_special_tokens;
    if (additional !== undefined && additional !== null) {
      if (!Array.isArray(additional)) throw new TokenizerError(file, 'additional_special_tokens must be a list');
      special.additional = additional.map((t, i) => tokenText(t, `additional_special_tokens[${i}]`, file));
    }
  }
  const flag = (key: string) => {
    const v = config?.[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean')
      throw new TokenizerError(configFile, `${key} must be true or false (found ${JSON.stringify(v)})`);
    return v;
  };
  const maxLength = config?.model_max_length;
  if (
    maxLength !== undefined &&
    maxLength !== null &&
    !(typeof maxLength === 'number' && Number.isInteger(maxLength) && maxLength > 0)
  ) {
    throw new TokenizerError(
      configFile,
      `model_max_length must be a positive integer (found ${JSON.stringify(maxLength)})`,
    );
  }
  return {
    doLowerCase: flag('do_lower_case'),
    // null (BERT's default) follows do_lower_case; kept distinct from "not set".
    stripAccents:
      config && 'strip_accents' in config ? (config.strip_accents === null ? null : flag('strip_accents')) : undefined,
    tokenizeChineseChars: flag('tokenize_chinese_chars'),
    addPrefixSpace: flag('add_prefix_space'),
    modelMaxLength: typeof maxLength === 'number' && maxLength < NO_LIMIT ? maxLength : undefined,
    special,
    source: configFile,
  };
}

function tokenText(value: unknown, field: string, file: string): string {
  if (typeof value === 'string') return value;
  const content = (value as { content?: unknown } | null)?.content;
  if (typeof content === 'string') return content;
  throw new TokenizerError(
    file,
    `${field} must be a token (a string, or an object with "content"), found ${JSON.stringify(value)}`,
  );
}

function readJsonObject(file: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerError(file, `cannot read (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new TokenizerError(file, 'must be a JSON object');
  return raw as Record<string, unknown>;
}
