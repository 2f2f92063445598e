/**
 * Threads cut a tensor only at multiples of this many elements, so work a gradient transform does per block
 * of elements (Child-Tuning-F draws its mask per block from its own stream) is the same for any thread count.
 */
export const SEGMENT_GRAIN = 8192;

/**
 * An update works through its segment in blocks of this many elements (grain-aligned), so the passes over one
 * block (clip, transform, AdamW) find its weights, gradient and moments still in the core's cache: 4 x 128 KiB.
 */
export const UPDATE_BLOCK = 4 * SEGMENT_GRAIN;

export interface Segment {
  index: number;
  lo: number;
  hi: number;
}

/**
 * Splits all parameter elements into `parts` runs of nearly equal size, in tensor order. Tensors are only
 * cut at multiples of SEGMENT_GRAIN.
 */
export function partition(sizes: readonly number[], parts: number): Segment[][] {
  const starts: number[] = [];
  let total = 0;
  for (const size of sizes) {
    starts.push(total);
    total += size;
  }
  const cuts = [0];
  for (let p = 1; p < parts; p++) {
    const at = Math.round((p * total) / parts);
    let i = 0;
    while (i + 1 < sizes.length && starts[i + 1] <= at) i++;
    const snapped = Math.min(sizes[i], Math.round((at - starts[i]) / SEGMENT_GRAIN) * SEGMENT_GRAIN);
    cuts.push(Math.max(cuts[p - 1], starts[i] + snapped));
  }
  cuts.push(total);
  return Array.from({ length: parts }, (_, p) => {
    const out: Segment[] = [];
    sizes.forEach((size, index) => {
      const lo = Math.max(cuts[p], starts[index]) - starts[index];
      const hi = Math.min(cuts[p + 1], starts[index] + size) - starts[index];
      if (hi > lo) out.push({ index, lo, hi });
    });
    return out;
  });
}
