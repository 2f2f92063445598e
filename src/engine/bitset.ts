/** One bit per parameter: the child-network mask of Child-Tuning-D, 32x smaller than a float mask. */
export const bitsetBytes = (n: number) => Math.ceil(n / 8);
export const getBit = (bits: Uint8Array, j: number) => (bits[j >> 3] >> (j & 7)) & 1;
export const setBit = (bits: Uint8Array, j: number) => {
  bits[j >> 3] |= 1 << (j & 7);
};

const BYTE_COUNTS = Uint8Array.from({ length: 256 }, (_, b) =>
  [0, 1, 2, 3, 4, 5, 6, 7].reduce((c, k) => c + ((b >> k) & 1), 0),
);

/** Set bits among the first n (whole bytes by table: F counts every tensor's mask every step). */
export function popcount(bits: Uint8Array, n: number): number {
  let c = 0;
  const whole = n >> 3;
  for (let i = 0; i < whole; i++) c += BYTE_COUNTS[bits[i]];
  for (let j = whole * 8; j < n; j++) c += getBit(bits, j);
  return c;
}
