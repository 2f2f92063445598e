import { ChildtuneError } from '../engine/errors.js';

/** A run failure caused by input or environment (not a bug): reported as one message with a hint. */
export class RunError extends ChildtuneError {
  constructor(message: string, hint?: string, stage?: string) {
    super('run', message, { hint, stage });
  }
}
