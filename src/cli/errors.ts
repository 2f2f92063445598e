import { ChildtuneError } from '../engine/errors.js';

/** An error in what the user typed: printed as one message (and hint); exit status 2 for a usage error, else 1. */
export class UserError extends ChildtuneError {
  constructor(message: string, hint?: string, exitCode: 1 | 2 = 1) {
    super(exitCode === 2 ? 'usage' : 'input', message, { hint });
  }
}

/**
 * Prints an error as the user sees it and returns the exit status: a ChildtuneError as its message and hint
 * (its code's exit status: 2 for usage, 130/143 for a signal, else 1); anything else also as one line,
 * flagged as a bug unless it is a system error (with an errno code). The stack only with --debug.
 */
export function printError(e: unknown, debug: boolean, io: { err: (text: string) => void }): number {
  if (e instanceof ChildtuneError) {
    io.err(`error: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`);
    if (debug) io.err(String(e.stack));
    return e.exitCode;
  }
  const err = e as Error;
  io.err(`error: ${err?.message ?? String(e)}`);
  if (debug) io.err(String(err?.stack));
  else if (!(err && typeof err === 'object' && 'code' in err))
    io.err('  (this looks like a bug in childtune; rerun with --debug and report the stack trace)');
  return 1;
}
