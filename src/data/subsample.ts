import { Rng } from '../engine/rng.js';
import { largestRemainder } from './apportion.js';
import type { Example } from './load.js';

/**
 * Low-resource subsampling: `size` example indices, deterministic for a seed.
 * Stratified: each class gets its share by largest remainder, so label proportions are kept.
 * Returned indices are sorted, so training order is decided by the training seed alone.
 */
export function subsampleIndices(
  examples: readonly Example[],
  size: number,
  seed: number,
  stratified: boolean,
): number[] {
  if (size > examples.length)
    throw new RangeError(`subsample size ${size} is larger than the split (${examples.length} examples)`);
  const rng = new Rng(seed);
  if (!stratified) return rng.sample(examples.length, size).sort((a, b) => a - b);
  const byClass = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const list = byClass.get(e.label) ?? [];
    list.push(i);
    byClass.set(e.label, list);
  });
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const quota = largestRemainder(
    classes.map((c) => (byClass.get(c)!.length * size) / examples.length),
    size,
  );
  const chosen: number[] = [];
  classes.forEach((c, i) => {
    const members = byClass.get(c)!;
    for (const j of rng.sample(members.length, quota[i])) chosen.push(members[j]);
  });
  return chosen.sort((a, b) => a - b);
}
