import { ChildtuneError } from '../engine/errors.js';

/** An error in what the user typed: printed as one message (and hint); exit status 2 for a usage error, else 1. */
export class UserError extends ChildtuneError {
  constructor(message: string, hint?: string, exitCode: 1 | 2 = 1) {
    super(exitCode === 2 ? 'usage' : 'input', message, { hint });
  }
}
