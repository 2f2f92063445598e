import { Rng } from '../engine/rng.js';
import { largestRemainder } from './apportion.js';

/**
 * One file dealt into splits by share: the rows are shuffled with the seed, and each split (in name order, so the
 * order the recipe writes them in does not matter) takes the next run of its count. Counts are the shares of the
 * row count rounded by largest remainder, so they add up to every row. Returns each split's row indices in file
 * order: the same rows, seed and shares give the same splits on every machine.
 */
export function ratioSplits(rows: number, shares: Record<string, number>, seed: number): Map<string, number[]> {
  const names = Object.keys(shares).sort();
  const total = names.reduce((a, n) => a + shares[n], 0);
  const counts = largestRemainder(
    names.map((n) => (shares[n] / total) * rows),
    rows,
  );
  const dealt = new Rng(seed).sample(rows, rows);
  const out = new Map<string, number[]>();
  let at = 0;
  names.forEach((n, i) => {
    out.set(
      n,
      dealt.slice(at, at + counts[i]).sort((a, b) => a - b),
    );
    at += counts[i];
  });
  return out;
}

/** Shares sum to 1 within rounding of the written decimals. */
export const sharesSumToOne = (shares: Record<string, number>) =>
  Math.abs(Object.values(shares).reduce((a, b) => a + b, 0) - 1) < 1e-9;
