/** One bit per parameter: the child-network mask of Child-Tuning-D, 32x smaller than a float mask. */
export const bitsetBytes = (n: number) => Math.ceil(n / 8);
export const getBit = (bits: Uint8Array, j: number) => (bits[j >> 3] >> (j & 7)) & 1;
export const setBit = (bits: Uint8Array, j: number) => {
  bits[j >> 3] |= 1 << (j & 7);
};

export function popcount(bits: Uint8Array, n: number): number {
  let c = 0;
  for (let j = 0; j < n; j++) c += getBit(bits, j);
  return c;
}
