import fs from 'node:fs';
import path from 'node:path';
import { csvRows, DataFileError, jsonlRows, readText, tsvRows, type RawRow } from './formats.js';
import type { Field, TaskSpec } from './tasks.js';

export interface Example {
  textA: string;
  textB?: string;
  /** Class index, or the score for regression. */
  label: number;
  /** 1-based line in the source file, for error messages and provenance. */
  line: number;
}

export interface LoadedSplit {
  file: string;
  examples: Example[];
  /** Rows dropped under on_bad_row: skip, with the first few reasons. */
  skipped: { count: number; samples: string[] };
  /** Rows without a gold label (SNLI's '-'), dropped as every reference loader does. */
  unlabelled: number;
}

export function splitFile(spec: TaskSpec, dir: string | undefined, split: string): string {
  const name = spec.files[split];
  if (!name) throw new DataFileError(dir ?? '.', 0, `the task has no split '${split}' (known: ${Object.keys(spec.files).join(', ') || 'none'}); declare it under dataset.files`);
  return path.resolve(dir ?? '.', name);
}

/** Splits already read by this process, keyed by file identity: validation, planning and running share one read. */
const loaded = new Map<string, LoadedSplit>();

/** Loads one split. Malformed rows throw DataFileError naming file and line, or are counted when onBadRow is 'skip'. */
export function loadSplit(spec: TaskSpec, dir: string | undefined, split: string, onBadRow: 'error' | 'skip' = 'error'): LoadedSplit {
  const file = splitFile(spec, dir, split);
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  const key = JSON.stringify([file, stat?.size, stat?.mtimeMs, spec, split, onBadRow]);
  const hit = loaded.get(key);
  if (hit) return hit;
  const result = readSplit(spec, file, split, onBadRow);
  loaded.set(key, result);
  return result;
}

function readSplit(spec: TaskSpec, file: string, split: string, onBadRow: 'error' | 'skip'): LoadedSplit {
  let text: string;
  try {
    text = readText(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataFileError(file, 0, code === 'ENOENT' ? 'file not found' : `cannot read (${(e as Error).message})`);
  }
  const rows = spec.format === 'jsonl' ? jsonlRows(text, file) : spec.format === 'csv' ? csvRows(text, file) : tsvRows(text);
  const out: LoadedSplit = { file, examples: [], skipped: { count: 0, samples: [] }, unlabelled: 0 };
  let header: string[] | undefined;
  let width: number | undefined;
  const columns = new Map<Field, number>();
  const column = (f: Field) => {
    if (typeof f === 'number') return f;
    let i = columns.get(f);
    if (i === undefined) {
      i = header?.indexOf(f) ?? -1;
      if (i < 0) throw new DataFileError(file, 1, header ? `no column '${f}' in the header (${header.join(', ')})` : `column '${f}' named, but the file has no header`);
      columns.set(f, i);
    }
    return i;
  };
  const labelIndex = new Map((spec.labels ?? []).map((l, i) => [l, i]));
  for (const row of rows) {
    if (spec.header && !header) {
      header = (row.cells as string[]).map((c) => c.trim());
      width = header.length;
      continue;
    }
    try {
      const example = toExample(row);
      if (example) out.examples.push(example);
    } catch (e) {
      if (!(e instanceof DataFileError) || onBadRow === 'error') throw e;
      out.skipped.count++;
      if (out.skipped.samples.length < 5) out.skipped.samples.push(e.message);
    }
  }
  return out;

  function cell(row: RawRow, f: Field): string {
    if (Array.isArray(row.cells)) {
      const i = column(f);
      const v = row.cells[i];
      if (v === undefined) throw new DataFileError(file, row.line, `row has ${row.cells.length} columns; column ${typeof f === 'number' ? f : `'${f}'`} is missing`);
      return v;
    }
    const v = row.cells[String(f)];
    if (v === undefined || v === null) throw new DataFileError(file, row.line, `field '${f}' is missing`);
    return typeof v === 'string' ? v : String(v);
  }

  function toExample(row: RawRow): Example | undefined {
    if (Array.isArray(row.cells)) {
      width ??= row.cells.length;
      if (row.cells.length !== width) throw new DataFileError(file, row.line, `row has ${row.cells.length} columns, expected ${width}`);
    }
    if (spec.splitColumn && cell(row, spec.splitColumn.field) !== spec.splitColumn.values[split]) return undefined;
    const raw = cell(row, spec.label).trim();
    if (spec.unlabelled?.includes(raw)) {
      out.unlabelled++;
      return undefined;
    }
    let label: number;
    if (spec.labels === null) {
      label = Number(raw);
      if (raw === '' || !Number.isFinite(label)) throw new DataFileError(file, row.line, `score '${raw}' is not a number`);
    } else {
      const i = labelIndex.get(raw);
      if (i === undefined) throw new DataFileError(file, row.line, `label '${raw}' is not one of ${spec.labels.join(', ')}`);
      label = i;
    }
    const textA = cell(row, spec.text[0]);
    const textB = spec.text.length > 1 ? cell(row, spec.text[1]!) : undefined;
    return { textA, textB, label, line: row.line };
  }
}
