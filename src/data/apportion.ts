/**
 * Whole counts for shares of `total` by largest remainder: each gets the floor of its exact share, and the units
 * left go one each to the largest remainders (the lower index first on a tie), so the counts add up to `total`.
 * Subsampling's per-class quotas and a file's split counts both take theirs from here.
 */
export function largestRemainder(exact: readonly number[], total: number): number[] {
  const counts = exact.map(Math.floor);
  let left = total - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((_, i) => i).sort((a, b) => exact[b] - counts[b] - (exact[a] - counts[a]) || a - b);
  for (const i of order) {
    if (left === 0) break;
    counts[i]++;
    left--;
  }
  return counts;
}
