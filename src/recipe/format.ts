import path from 'node:path';
import type { Diagnostic } from './diagnostics.js';

/** Compiler-style text: `file:line:col: error CT0102 unknown-key: message`, then suggestion and notes. */
export function formatDiagnostics(diagnostics: readonly Diagnostic[], cwd = process.cwd()): string {
  const lines: string[] = [];
  for (const d of diagnostics) {
    const loc = d.location ? `${d.location.file === '--set' ? '--set' : path.relative(cwd, d.location.file) || d.location.file}:${d.location.line}:${d.location.column}: ` : '';
    lines.push(`${loc}${d.severity} ${d.code} ${d.name}: ${d.message}${d.pointer ? ` (at ${d.pointer})` : ''}`);
    if (d.suggestion) lines.push(`  did you mean '${d.suggestion}'?`);
    for (const n of d.notes ?? []) lines.push(`  note: ${n}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  lines.push(`${errors} error${errors === 1 ? '' : 's'}${warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''}`);
  return lines.join('\n');
}
