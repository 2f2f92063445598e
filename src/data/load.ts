import fs from 'node:fs';
import path from 'node:path';
import {
  csvRows,
  DataFileError,
  jsonlRows,
  MAX_ROW_CHARS,
  readLines,
  tsvRows,
  type RawRow,
  type RawRowOrProblem,
} from './formats.js';
import { exportSpec } from './hub-layouts.js';
import { parquetRows } from './parquet.js';
import { ratioSplits } from './split-ratio.js';
import type { Field, FileFormat, TaskSpec } from './task-spec.js';

export interface Example {
  textA: string;
  textB?: string;
  /** Class index, or the score for regression; NaN for a row without one, read with labels optional. */
  label: number;
  /** The row's id (ReadOptions.idFields), when asked for and present. */
  id?: string;
  /** 1-based line (parquet: row) in the source file, for error messages and provenance. */
  line: number;
}

export interface LoadedSplit {
  file: string;
  examples: Example[];
  /** Bad rows (dropped under on_bad_row: skip), with the first few reasons. */
  skipped: { count: number; samples: string[] };
  /** The first bad rows themselves, for validation to report each under its own code. */
  problems: DataFileError[];
  /** Every label outside the task's, with its number of rows (validation suggests the fix from them). */
  badLabels: Record<string, number>;
  /** Rows without a gold label (SNLI's '-', datasets' -1), dropped as every reference loader does. */
  unlabelled: number;
  /** True when the file holds no data rows at all. */
  empty: boolean;
}

/** Bad rows kept for reporting; the rest are only counted. */
const KEPT_PROBLEMS = 20;

/** The file of a split; `dev` falls back to `validation`, datasets' name for it. */
export function splitFile(spec: TaskSpec, dir: string | undefined, split: string): string {
  const name = spec.files[split] ?? (split === 'dev' ? spec.files.validation : undefined);
  if (!name)
    throw new DataFileError(
      dir ?? '.',
      0,
      `the task has no split '${split}' (known: ${Object.keys(spec.files).join(', ') || 'none'}); declare it under dataset.files`,
      'missing',
    );
  return path.resolve(dir ?? '.', name);
}

const EXTENSIONS: Record<string, FileFormat> = {
  '.tsv': 'tsv',
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.json': 'jsonl',
  '.ndjson': 'jsonl',
  '.parquet': 'parquet',
};

/**
 * How a file is read: a custom dataset's declared format, else its extension; a built-in task's file in another
 * format than the task's distribution is a datasets export, read with the hub's column names.
 */
export function fileSpec(spec: TaskSpec, file: string): TaskSpec {
  const byExtension = EXTENSIONS[path.extname(file).toLowerCase()];
  if (spec.id === 'custom') {
    const format = spec.format ?? byExtension;
    if (!format)
      throw new DataFileError(
        file,
        0,
        `cannot tell the format from the extension '${path.extname(file)}'; set dataset.format (tsv, csv, jsonl or parquet)`,
        'unreadable',
      );
    return { ...spec, format };
  }
  return byExtension && byExtension !== spec.format ? exportSpec(spec, byExtension) : spec;
}

/** Splits already read by this process, keyed by file identity: validation, planning and running share one read. */
const loaded = new Map<string, LoadedSplit>();

/** Loads one split. Bad rows throw a DataFileError naming file and line (the first one), or are counted when onBadRow is 'skip'. */
export function loadSplit(
  spec: TaskSpec,
  dir: string | undefined,
  split: string,
  onBadRow: 'error' | 'skip' = 'error',
): LoadedSplit {
  const file = splitFile(spec, dir, split);
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  const key = JSON.stringify([file, stat?.size, stat?.mtimeMs, spec, split]);
  let result = loaded.get(key);
  if (!result) {
    result = spec.splitRatio
      ? dealtSplit(loadSplit({ ...spec, splitRatio: undefined }, dir, split, 'skip'), spec.splitRatio, split)
      : readSplit(fileSpec(spec, file), file, split);
    loaded.set(key, result);
  }
  if (onBadRow === 'error' && result.problems.length) throw result.problems[0];
  return result;
}

/** A split's share of a file dealt by ratio: its rows of the file's usable ones (bad rows stay reported, with every split). */
function dealtSplit(whole: LoadedSplit, ratio: NonNullable<TaskSpec['splitRatio']>, split: string): LoadedSplit {
  const mine = ratioSplits(whole.examples.length, ratio.shares, ratio.seed).get(split) ?? [];
  return { ...whole, examples: mine.map((i) => whole.examples[i]) };
}

/** A parquet split may be sharded: `x-00000-of-00003.parquet` is read with its siblings, as is `split/0000.parquet`. */
function shardsOf(file: string): string[] {
  const named = /^(.*)-00000-of-(\d{5})\.parquet$/.exec(path.basename(file));
  if (named)
    return Array.from({ length: Number(named[2]) }, (_, i) =>
      path.join(path.dirname(file), `${named[1]}-${String(i).padStart(5, '0')}-of-${named[2]}.parquet`),
    );
  if (path.basename(file) === '0000.parquet' && fs.existsSync(path.dirname(file))) {
    return fs
      .readdirSync(path.dirname(file))
      .filter((f) => /^\d{4}\.parquet$/.test(f))
      .sort()
      .map((f) => path.join(path.dirname(file), f));
  }
  return [file];
}

function* rowsOf(spec: TaskSpec, file: string): Generator<RawRowOrProblem> {
  if (spec.format === 'parquet') {
    let offset = 0;
    for (const shard of shardsOf(file)) {
      const rows = parquetRows(shard);
      for (const r of rows) yield { line: offset + r.line, cells: r.cells };
      offset += rows.length;
    }
    return;
  }
  const lines = readLines(file);
  yield* spec.format === 'jsonl'
    ? jsonlRows(lines, file)
    : spec.format === 'csv'
      ? csvRows(lines, file)
      : tsvRows(lines, file);
}

/** How readSplit treats rows beyond a training split's needs. */
interface ReadOptions {
  /** Keep rows without a gold label (no label column, an empty or unlabelled mark) with label NaN. */
  labelOptional?: boolean;
  /** Fields whose first present value becomes the example's id. */
  idFields?: string[];
}

/**
 * Every row of a file to predict (`childtune predict`): rows without a gold label are kept (label NaN), and
 * the `index` (or `id`) column, where the file has one, names each row. A bad row throws its DataFileError.
 */
export function readForPrediction(spec: TaskSpec, file: string): LoadedSplit {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) throw new DataFileError(file, 0, 'file not found', 'missing');
  const read = readSplit({ ...fileSpec(spec, file), splitColumn: undefined }, file, 'predict', {
    labelOptional: true,
    idFields: ['index', 'id'],
  });
  if (read.problems.length) throw read.problems[0];
  return read;
}

function readSplit(spec: TaskSpec, file: string, split: string, options: ReadOptions = {}): LoadedSplit {
  const out: LoadedSplit = {
    file,
    examples: [],
    skipped: { count: 0, samples: [] },
    badLabels: {},
    problems: [],
    unlabelled: 0,
    empty: true,
  };
  let header: string[] | undefined;
  let width: number | undefined;
  const columns = new Map<Field, number>();
  const column = (f: Field) => {
    if (typeof f === 'number') return f;
    let i = columns.get(f);
    if (i === undefined) {
      i = header?.indexOf(f) ?? -1;
      if (i < 0)
        throw new DataFileError(
          file,
          1,
          header
            ? `no column '${f}' in the header (${header.join(', ')})`
            : `column '${f}' named, but the file has no header`,
          'columns',
        );
      columns.set(f, i);
    }
    return i;
  };
  const labels = spec.labels ?? [];
  const labelIndex = new Map(labels.map((l, i) => [l, i]));
  spec.classNames?.forEach((n, i) => {
    if (!labelIndex.has(n)) labelIndex.set(n, i);
  });
  // Exports (csv, jsonl, parquet) may hold datasets' integer class indices; a distributed tsv never does.
  const indexLabels = spec.format !== 'tsv';
  for (const row of rowsOf(spec, file)) {
    if (!(row instanceof DataFileError) && spec.header && Array.isArray(row.cells) && !header) {
      header = row.cells.map((c) => c.trim());
      width = header.length;
      continue;
    }
    out.empty = false;
    try {
      if (row instanceof DataFileError) throw row;
      const example = toExample(row);
      if (example) out.examples.push(example);
    } catch (e) {
      if (!(e instanceof DataFileError)) throw e;
      if (e.kind === 'columns') throw e; // the file's shape, not a row
      out.skipped.count++;
      if (out.skipped.samples.length < 5) out.skipped.samples.push(e.message);
      if (out.problems.length < KEPT_PROBLEMS) out.problems.push(e);
    }
  }
  return out;

  function value(row: RawRow, f: Field): unknown {
    if (Array.isArray(row.cells)) {
      const v = row.cells[column(f)];
      if (v === undefined)
        throw new DataFileError(
          file,
          row.line,
          `row has ${row.cells.length} columns; column ${typeof f === 'number' ? f : `'${f}'`} is missing`,
        );
      return v;
    }
    const v = row.cells[String(f)];
    if (v === undefined || v === null) throw new DataFileError(file, row.line, `field '${f}' is missing`);
    return v;
  }

  function text(row: RawRow, f: Field): string {
    const v = value(row, f);
    // A number or a list where text belongs is a column mix-up (jsonl, parquet): never tokenized as its digits.
    if (typeof v !== 'string')
      throw new DataFileError(
        file,
        row.line,
        `field '${f}' holds ${Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `the ${typeof v} ${JSON.stringify(v)}`}, not text; check dataset.text_fields (and the file's columns)`,
      );
    if (v.length > MAX_ROW_CHARS)
      throw new DataFileError(
        file,
        row.line,
        `field '${f}' is longer than ${MAX_ROW_CHARS} characters (the limit)`,
        'too-large',
      );
    return v;
  }

  /** Whether a row of a file holding every split is this split's; a value naming no split is a bad row. */
  function inSplit(row: RawRow, by: NonNullable<TaskSpec['splitColumn']>): boolean {
    const v = text(row, by.field).trim();
    const known = Object.values(by.values);
    if (!known.includes(v))
      throw new DataFileError(
        file,
        row.line,
        `${typeof by.field === 'number' ? `column ${by.field}` : `'${by.field}'`} is '${v}', which marks no split (${Object.entries(
          by.values,
        )
          .map(([k, x]) => `${k}: ${x}`)
          .join(
            ', ',
          )}); ${spec.id === 'custom' ? 'add it to dataset.split.values, or ' : ''}set on_bad_row: skip to leave such rows out`,
      );
    return v === by.values[split];
  }

  function toExample(row: RawRow): Example | undefined {
    if (Array.isArray(row.cells)) {
      width ??= row.cells.length;
      if (row.cells.length !== width)
        throw new DataFileError(file, row.line, `row has ${row.cells.length} columns, expected ${width}`);
    }
    if (spec.splitColumn && !inSplit(row, spec.splitColumn)) return undefined;
    const id = options.idFields?.find((f) => has(row, f));
    const texts = () => ({
      textA: text(row, spec.text[0]),
      textB: spec.text.length > 1 ? text(row, spec.text[1]!) : undefined,
      line: row.line,
      ...(id !== undefined && { id: String(value(row, id)) }),
    });
    const unlabelled = () => {
      out.unlabelled++;
      return options.labelOptional ? { ...texts(), label: NaN } : undefined;
    };
    if (options.labelOptional && !has(row, spec.label)) return unlabelled();
    const rawValue = value(row, spec.label);
    const raw = (typeof rawValue === 'string' ? rawValue : String(rawValue)).trim();
    if (spec.unlabelled?.includes(raw) || (options.labelOptional && raw === '')) return unlabelled();
    let label: number;
    if (spec.labels === null) {
      label = Number(raw);
      if (raw === '' || !Number.isFinite(label))
        throw new DataFileError(file, row.line, `score '${raw}' is not a number`, 'score');
      const range = spec.scoreRange;
      if (range && !(label >= range[0] && label <= range[1]))
        throw new DataFileError(
          file,
          row.line,
          `score ${raw} is outside [${range[0]}, ${range[1]}], the task's range`,
          'score',
        );
    } else {
      let i = labelIndex.get(raw);
      if (i === undefined && indexLabels && /^-?\d+$/.test(raw)) {
        const n = Number(raw);
        // datasets' mark for a missing label (test splits) in a built-in task's export; a custom data set names
        // its labels itself, so -1 there is an error like any other label outside them.
        if (n === -1 && spec.id !== 'custom') return unlabelled();
        if (n >= 0 && n < labels.length) i = n;
      }
      if (i === undefined) out.badLabels[raw] = (out.badLabels[raw] ?? 0) + 1;
      if (i === undefined)
        throw new DataFileError(
          file,
          row.line,
          `label '${raw}' is not one of ${labels.join(', ')}${indexLabels ? ` (or a class index 0-${labels.length - 1})` : ''}${raw === '-1' ? "; -1 marks an unlabelled row in datasets' exports: remove such rows from the file" : ''}`,
          'label',
        );
      label = i;
    }
    return { ...texts(), label };
  }

  /** Whether a row has a value for the field (a header column, a cell, or a non-null JSON field). */
  function has(row: RawRow, f: Field): boolean {
    if (!Array.isArray(row.cells)) return row.cells[String(f)] !== undefined && row.cells[String(f)] !== null;
    const i = typeof f === 'number' ? f : (header?.indexOf(f) ?? -1);
    return i >= 0 && i < row.cells.length;
  }
}
