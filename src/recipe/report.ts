import type { DiagnosticCode } from './diagnostics.js';

/** How a check reports a problem: code, message and position, with notes, a suggestion, and whether it only warns. */
export type Report = (
  code: DiagnosticCode,
  message: string,
  pointer: string,
  notes?: string[],
  suggestion?: string,
  severity?: 'warning',
) => void;
