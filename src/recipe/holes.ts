import { skipped, type Diagnostic } from './diagnostics.js';

/**
 * A part of the recipe that later phases must not read: its value is unknown (an unset ${VAR}, a --set that
 * could not be applied), rejected by the schema, or refused (a path outside the project). Checks that would
 * read it are skipped rather than run on a guess, and the error that made the hole names them.
 */
export interface Hole {
  /** JSON pointer into the composed recipe. */
  pointer: string;
  cause: Diagnostic;
}

/** `pointer` is `ancestor` or lies below it. */
export const isWithin = (pointer: string, ancestor: string) =>
  pointer === ancestor || pointer.startsWith(ancestor + '/');

export class Holes {
  private readonly list: Hole[];

  constructor(initial: readonly Hole[] = []) {
    this.list = [...initial];
  }

  get all(): readonly Hole[] {
    return this.list;
  }

  add(pointer: string, cause: Diagnostic) {
    this.list.push({ pointer, cause });
  }

  /** The hole at or above `pointer`: the value there is unknown as a whole. */
  covering(pointer: string): Hole | undefined {
    return this.list.find((h) => isWithin(pointer, h.pointer));
  }

  /** The hole a read of `pointer`'s value, everything below it included, would fall into. */
  touching(pointer: string): Hole | undefined {
    return this.list.find((h) => isWithin(pointer, h.pointer) || isWithin(h.pointer, pointer));
  }

  /** Runs `check` unless a value it reads lies in a hole; then names it as skipped on that hole's error. */
  guard(check: string, reads: readonly string[], run: () => void) {
    const hole = reads.map((r) => this.touching(r)).find((h) => h !== undefined);
    if (hole) skipped(hole.cause, check);
    else run();
  }
}
