import path from 'node:path';
import type { Diagnostic } from './diagnostics.js';

/** Compiler-style text: `file:line:col: error CT0102 unknown-key: message`, then suggestion, notes and the checks it stopped. */
export function formatDiagnostics(diagnostics: readonly Diagnostic[], cwd = process.cwd()): string {
  const lines: string[] = [];
  for (const d of diagnostics) {
    const loc = d.location
      ? `${d.location.file === '--set' ? '--set' : path.relative(cwd, d.location.file) || d.location.file}:${d.location.line}:${d.location.column}: `
      : '';
    lines.push(`${loc}${d.severity} ${d.code} ${d.name}: ${d.message}${d.pointer ? ` (at ${d.pointer})` : ''}`);
    if (d.suggestion) lines.push(`  did you mean '${d.suggestion}'?`);
    for (const n of d.notes ?? []) lines.push(`  note: ${n}`);
    if (d.skipped?.length) lines.push(`  skipped because of this: ${d.skipped.join('; ')}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  const skipped = diagnostics.reduce((n, d) => n + (d.skipped?.length ?? 0), 0);
  lines.push(
    `${errors} error${errors === 1 ? '' : 's'}${warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''}${skipped ? ` (${skipped} check${skipped === 1 ? '' : 's'} skipped because of them)` : ''}`,
  );
  return lines.join('\n');
}
