/** The closed set of diagnostic codes. A code never changes meaning once published. */
export const DIAGNOSTIC_CODES = {
  CT0001: 'yaml-syntax',
  CT0002: 'yaml-tag-forbidden',
  CT0003: 'recipe-too-large',
  CT0004: 'recipe-too-deep',
  CT0005: 'not-a-mapping',
  CT0006: 'file-unreadable',
  CT0101: 'unsupported-version',
  CT0102: 'unknown-key',
  CT0103: 'missing-key',
  CT0104: 'wrong-type',
  CT0105: 'invalid-value',
  CT0106: 'out-of-range',
  CT0107: 'invalid-shape',
  CT0108: 'name-not-a-file-name',
  CT0201: 'extends-not-found',
  CT0202: 'extends-cycle',
  CT0203: 'path-escapes-root',
  CT0204: 'bad-override',
  CT0205: 'undefined-variable',
  CT0301: 'reserve-p-range',
  CT0302: 'reserve-p-missing',
  CT0303: 'option-not-applicable',
  CT0304: 'subsample-too-large',
  CT0305: 'label-map-incomplete',
  CT0306: 'sweep-path-unknown',
  CT0307: 'custom-dataset-incomplete',
  CT0308: 'data-file-missing',
  CT0309: 'model-dir-invalid',
  CT0310: 'metric-not-applicable',
  CT0311: 'sweep-too-large',
  CT0320: 'label-not-in-set',
  CT0321: 'score-out-of-range',
  CT0322: 'data-row-invalid',
  CT0323: 'data-row-too-large',
  CT0324: 'data-file-empty',
  CT0325: 'data-file-invalid',
  CT0340: 'kernels-unavailable',
} as const;

export type DiagnosticCode = keyof typeof DIAGNOSTIC_CODES;

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

export interface Diagnostic {
  code: DiagnosticCode;
  name: (typeof DIAGNOSTIC_CODES)[DiagnosticCode];
  severity: 'error' | 'warning';
  message: string;
  /** JSON pointer into the composed recipe ('' for the whole document). */
  pointer: string;
  location?: SourceLocation;
  suggestion?: string;
  notes?: string[];
  /** Checks not run because of this error (they would have read the value it is about). */
  skipped?: string[];
}

export function diagnostic(
  code: DiagnosticCode,
  message: string,
  pointer: string,
  extra: Partial<Pick<Diagnostic, 'location' | 'suggestion' | 'notes' | 'severity'>> = {},
): Diagnostic {
  return { code, name: DIAGNOSTIC_CODES[code], severity: extra.severity ?? 'error', message, pointer, ...extra };
}

export const hasErrors = (ds: readonly Diagnostic[]) => ds.some((d) => d.severity === 'error');

/** Records on `cause` that `check` was not run because of it. */
export function skipped(cause: Diagnostic, check: string) {
  if (!cause.skipped?.includes(check)) cause.skipped = [...(cause.skipped ?? []), check];
}

/**
 * Diagnostics in reading order: by file (the top recipe first, then its bases in the order read, then --set
 * options), line and column; ties keep the order of the phases. An exact repeat is reported once.
 */
export function ordered(diagnostics: readonly Diagnostic[], files: readonly string[]): Diagnostic[] {
  const rank = (d: Diagnostic) => {
    const file = d.location?.file;
    if (file === undefined) return files.length + 1;
    return file === '--set' ? files.length : files.includes(file) ? files.indexOf(file) : files.length - 0.5;
  };
  const unique = new Map<string, Diagnostic>();
  for (const d of diagnostics) {
    const key = [d.code, d.pointer, d.message, d.location?.file, d.location?.line, d.location?.column].join('|');
    const first = unique.get(key);
    if (!first) unique.set(key, d);
    else for (const check of d.skipped ?? []) skipped(first, check);
  }
  const position = (d: Diagnostic) => [rank(d), d.location?.line ?? 0, d.location?.column ?? 0];
  return [...unique.values()].sort((a, b) => {
    const [pa, pb] = [position(a), position(b)];
    return pa[0] - pb[0] || pa[1] - pb[1] || pa[2] - pb[2];
  });
}

/** JSON pointer helpers (RFC 6901). */
export const pointerOf = (segments: readonly (string | number)[]) =>
  segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');

export const segmentsOf = (pointer: string): string[] =>
  pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));

export const dottedOf = (pointer: string) => segmentsOf(pointer).join('.');
