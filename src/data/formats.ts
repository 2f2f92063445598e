import fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { ChildtuneError } from '../engine/errors.js';

/** One raw record with the 1-based line (or parquet row) it starts on. */
export interface RawRow {
  line: number;
  /** Cells by position (tsv/csv) or the parsed object (jsonl, parquet). */
  cells: string[] | Record<string, unknown>;
}

/**
 * The longest line or record (and parquet text field) read, in characters. BERT-family models see at most
 * 512 tokens, so a longer row is almost surely a broken file (a missing newline or quote); refusing it
 * before it is buffered keeps a 200 MB line from exhausting the heap.
 */
export const MAX_ROW_CHARS = 1 << 20;

/** What went wrong, so validation can give each kind its own diagnostic code. */
export type DataProblem = 'missing' | 'unreadable' | 'columns' | 'row' | 'too-large' | 'label' | 'score';

export class DataFileError extends ChildtuneError {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
    readonly kind: DataProblem = 'row',
  ) {
    super('data', `${file}:${line}: ${message}`);
  }
}

const tooLarge = (file: string, line: number) =>
  new DataFileError(
    file,
    line,
    `row longer than ${MAX_ROW_CHARS} characters (the limit); the file is probably missing a line break or a closing quote`,
    'too-large',
  );

export interface Line {
  line: number;
  text: string;
  /** Set instead of text for a line over MAX_ROW_CHARS, which is skipped without being buffered. */
  tooLong?: true;
}

/** Lines of a UTF-8 file, read in chunks (LF or CRLF, a leading byte-order mark dropped: MRPC ships one). */
export function* readLines(file: string): Generator<Line> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataFileError(
      file,
      0,
      code === 'ENOENT' ? 'file not found' : `cannot read (${(e as Error).message})`,
      code === 'ENOENT' ? 'missing' : 'unreadable',
    );
  }
  const decoder = new StringDecoder('utf8');
  const buf = Buffer.allocUnsafe(1 << 16);
  let pending = '';
  let skipping = false;
  let line = 1;
  let first = true;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      let text = n > 0 ? decoder.write(buf.subarray(0, n)) : decoder.end();
      if (first && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        const piece = skipping ? '' : pending + text.slice(start, nl);
        if (skipping || piece.length > MAX_ROW_CHARS) yield { line, text: '', tooLong: true };
        else yield { line, text: piece.endsWith('\r') ? piece.slice(0, -1) : piece };
        pending = '';
        skipping = false;
        line++;
        start = nl + 1;
      }
      if (!skipping) {
        pending += text.slice(start);
        if (pending.length > MAX_ROW_CHARS) {
          pending = '';
          skipping = true;
        }
      }
      if (n <= 0) break;
    }
    if (skipping) yield { line, text: '', tooLong: true };
    else if (pending !== '') yield { line, text: pending.endsWith('\r') ? pending.slice(0, -1) : pending };
  } finally {
    fs.closeSync(fd);
  }
}

/** A row problem met while reading, reported (or skipped) by the loader like any other bad row. */
export type RawRowOrProblem = RawRow | DataFileError;

/** Tab-separated rows as distributed by GLUE: no quoting. */
export function* tsvRows(lines: Iterable<Line>, file: string): Generator<RawRowOrProblem> {
  for (const l of lines) {
    if (l.tooLong) yield tooLarge(file, l.line);
    else if (l.text.trim() !== '') yield { line: l.line, cells: l.text.split('\t') };
  }
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks. */
export function* csvRows(lines: Iterable<Line>, file: string): Generator<RawRowOrProblem> {
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let start = 0;
  let size = 0;
  for (const l of lines) {
    if (l.tooLong) {
      yield tooLarge(file, quoted ? start : l.line);
      cells = [];
      cell = '';
      quoted = false;
      size = 0;
      continue;
    }
    if (!quoted) {
      start = l.line;
      cells = [];
      cell = '';
      size = 0;
    } else cell += '\n';
    size += l.text.length + 1;
    if (size > MAX_ROW_CHARS) {
      yield tooLarge(file, start);
      quoted = false;
      continue;
    }
    const t = l.text;
    for (let i = 0; i < t.length; i++) {
      const c = t[i];
      if (quoted) {
        if (c === '"' && t[i + 1] === '"') {
          cell += '"';
          i++;
        } else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"' && cell === '') quoted = true;
      else if (c === ',') {
        cells.push(cell);
        cell = '';
      } else cell += c;
    }
    if (quoted) continue;
    cells.push(cell);
    if (!(cells.length === 1 && cells[0].trim() === '')) yield { line: start, cells };
  }
  if (quoted) yield new DataFileError(file, start, 'unterminated quoted field');
}

export function* jsonlRows(lines: Iterable<Line>, file: string): Generator<RawRowOrProblem> {
  for (const l of lines) {
    if (l.tooLong) {
      yield tooLarge(file, l.line);
      continue;
    }
    if (l.text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(l.text);
    } catch (e) {
      yield new DataFileError(file, l.line, `not valid JSON (${(e as Error).message})`);
      continue;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value))
      yield new DataFileError(file, l.line, 'each line must be a JSON object');
    else yield { line: l.line, cells: value as Record<string, unknown> };
  }
}
