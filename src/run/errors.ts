/** A run failure caused by input or environment (not a bug): reported as one message with a hint. */
export class RunError extends Error {
  constructor(message: string, readonly hint?: string, readonly stage?: string) {
    super(message);
  }
}
