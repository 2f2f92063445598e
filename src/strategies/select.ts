/**
 * The k-th largest value of `values` (1-based k) in expected linear time: iterative quickselect with a
 * median-of-three pivot and three-way partitioning (fast on the many ties a Fisher accumulator has).
 * Works on a copy; the input is untouched.
 */
export const kthLargest = (values: Float32Array, k: number): number => kthLargestInPlace(Float32Array.from(values), k);

/** kthLargest without the copy: reorders `values` (for a scratch array whose order no longer matters). */
export function kthLargestInPlace(a: Float32Array, k: number): number {
  if (k < 1 || k > a.length) throw new RangeError(`k=${k} outside 1..${a.length}`);
  let lo = 0;
  let hi = a.length - 1;
  const idx = k - 1; // position in descending order
  for (;;) {
    if (lo === hi) return a[lo];
    const mid = (lo + hi) >>> 1;
    const x = a[lo],
      y = a[mid],
      z = a[hi];
    const pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y;
    // Dutch flag, descending: [lo, lt) > pivot, [lt, gt] == pivot, (gt, hi] < pivot.
    let lt = lo,
      i = lo,
      gt = hi;
    while (i <= gt) {
      const v = a[i];
      if (v > pivot) {
        a[i] = a[lt];
        a[lt] = v;
        lt++;
        i++;
      } else if (v < pivot) {
        a[i] = a[gt];
        a[gt] = v;
        gt--;
      } else i++;
    }
    if (idx < lt) hi = lt - 1;
    else if (idx > gt) lo = gt + 1;
    else return pivot;
  }
}
