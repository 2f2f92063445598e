/** An error the user can act on: printed as one message (and hint), never as a stack trace unless --debug. */
export class UserError extends Error {
  constructor(message: string, readonly hint?: string, readonly exitCode = 1) {
    super(message);
  }
}
