import { ChildtuneError } from '../engine/errors.js';

/**
 * SIGINT and SIGTERM stop a run at its next safe point (between steps) instead of mid-write: the first
 * signal sets a flag the loops poll; a second one exits at once. Exit codes follow the shell: 130 for
 * SIGINT, 143 for SIGTERM.
 */
export class Interrupted extends ChildtuneError {
  declare readonly hint: string;
  constructor(
    readonly signal: NodeJS.Signals,
    stage?: string,
  ) {
    super('interrupted', `interrupted by ${signal}${stage ? ` during ${stage}` : ''}`, {
      stage,
      exitCode: exitCodeOf(signal),
      hint: 'Continue with: childtune run --resume RUN_DIR (or the same `run --trial K LOCK` / `sweep --resume`).',
    });
  }
}

const exitCodeOf = (signal: NodeJS.Signals) => 128 + (signal === 'SIGINT' ? 2 : 15);

let requested: NodeJS.Signals | undefined;

export const interruptRequested = () => requested !== undefined;

/**
 * Lets the event loop run signal handlers. A single-threaded step awaits only settled promises, which never
 * reach the event loop: without this, Ctrl-C would wait for the run's end.
 */
export const yieldToSignals = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Throws Interrupted at a safe point once a signal arrived. */
export function checkInterrupt(stage?: string) {
  if (requested) throw new Interrupted(requested, stage);
}

/** Installs the handlers for the duration of fn (a command), then restores the defaults. */
export async function interruptible<T>(log: (line: string) => void, fn: () => Promise<T>): Promise<T> {
  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) process.exit(exitCodeOf(signal));
    requested = signal;
    log(`${signal}: stopping at the next safe point (send it again to stop at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    requested = undefined;
  }
}
