import fs from 'node:fs';

/** One raw record with the 1-based line it starts on. */
export interface RawRow {
  line: number;
  /** Cells by position (tsv/csv) or the parsed object (jsonl). */
  cells: string[] | Record<string, unknown>;
}

export class DataFileError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}:${line}: ${message}`);
  }
}

export function readText(file: string): string {
  let text = fs.readFileSync(file, 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // MRPC ships with a byte-order mark
  return text;
}

/** Tab-separated rows as distributed by GLUE: no quoting, LF or CRLF line ends. */
export function* tsvRows(text: string): Generator<RawRow> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    yield { line: i + 1, cells: line.split('\t') };
  }
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines. */
export function* csvRows(text: string, file: string): Generator<RawRow> {
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const start = line;
    const cells: string[] = [];
    let cell = '';
    let quoted = false;
    for (;;) {
      const c = text[i];
      if (quoted) {
        if (c === undefined) throw new DataFileError(file, start, 'unterminated quoted field');
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 2; continue; }
        if (c === '"') { quoted = false; i++; continue; }
        if (c === '\n') line++;
        cell += c;
        i++;
        continue;
      }
      if (c === '"' && cell === '') { quoted = true; i++; continue; }
      if (c === ',') { cells.push(cell); cell = ''; i++; continue; }
      if (c === undefined || c === '\n' || (c === '\r' && text[i + 1] === '\n')) {
        cells.push(cell);
        i += c === '\r' ? 2 : 1;
        line++;
        break;
      }
      cell += c;
      i++;
    }
    if (cells.length === 1 && cells[0].trim() === '') continue;
    yield { line: start, cells };
  }
}

export function* jsonlRows(text: string, file: string): Generator<RawRow> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(lines[i]);
    } catch (e) {
      throw new DataFileError(file, i + 1, `not valid JSON (${(e as Error).message})`);
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new DataFileError(file, i + 1, 'each line must be a JSON object');
    yield { line: i + 1, cells: value as Record<string, unknown> };
  }
}
