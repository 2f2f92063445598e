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
  CT0320: 'label-not-in-set',
  CT0321: 'score-out-of-range',
  CT0322: 'data-row-invalid',
  CT0323: 'data-row-too-large',
  CT0324: 'data-file-empty',
  CT0325: 'data-file-invalid',
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

/** JSON pointer helpers (RFC 6901). */
export const pointerOf = (segments: readonly (string | number)[]) =>
  segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');

export const segmentsOf = (pointer: string): string[] =>
  pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));

export const dottedOf = (pointer: string) => segmentsOf(pointer).join('.');
