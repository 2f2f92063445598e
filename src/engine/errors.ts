/**
 * The one base of every error childtune expects (bad input, a missing file, a full disk, a signal): a closed
 * code, a message, an optional hint, the stage it happened in (set by the plan walk) and the exit status.
 * The CLI prints such an error as one message and its hint, never as a stack trace unless --debug; anything
 * else that reaches it is a bug.
 */
export const ERROR_CODES = {
  /** The command line itself is wrong. */
  usage: { exitCode: 2 },
  /** A recipe, file or argument the user gave cannot be used. */
  input: { exitCode: 1 },
  /** A data file (tsv, csv, jsonl) is malformed. */
  data: { exitCode: 1 },
  /** A model directory (config, weights) is malformed or does not fit. */
  model: { exitCode: 1 },
  tokenizer: { exitCode: 1 },
  safetensors: { exitCode: 1 },
  /** The model hub or its local cache. */
  hub: { exitCode: 1 },
  /** A tfjs backend is missing or failed. */
  backend: { exitCode: 1 },
  /** A file could not be written (disk full, permissions). */
  write: { exitCode: 1 },
  /** A run, sweep or report cannot go on (a refused resume, a budget, a damaged run artifact). */
  run: { exitCode: 1 },
  /** SIGINT (130) or SIGTERM (143) stopped a run at a safe point. */
  interrupted: { exitCode: 130 },
} as const satisfies Record<string, { exitCode: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetails {
  hint?: string;
  stage?: string;
  /** Only where the code's status depends on the case (a signal's number). */
  exitCode?: number;
}

export class ChildtuneError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly exitCode: number;
  /** The stage that failed: given by the thrower where it knows better, else set by the plan walk. */
  stage?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.hint = details.hint;
    this.stage = details.stage;
    this.exitCode = details.exitCode ?? ERROR_CODES[code].exitCode;
  }
}
