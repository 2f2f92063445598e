/**
 * xoshiro128** seeded with splitmix32: fast, 32-bit, and its state (four words) fits in a checkpoint.
 * tfjs's randomUniform runs in JavaScript on every backend and cannot be checkpointed, so every random
 * draw in childtune (dropout, masks, shuffles, initialisation) comes from here.
 */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed: number | readonly number[]) {
    if (typeof seed === 'number') seedState(seed, this.s);
    else this.s.set(seed);
  }

  /** A child generator whose stream is independent of this one's future draws. */
  fork(salt: number): Rng {
    return new Rng((this.nextU32() ^ Math.imul(salt + 1, 0x9e3779b1)) >>> 0);
  }

  get state(): number[] {
    return [...this.s];
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  /** k distinct integers from [0, n), in random order (partial Fisher-Yates). */
  sample(n: number, k: number): number[] {
    const pool = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + this.int(n - i);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return pool.slice(0, k);
  }

  /**
   * The next n 32-bit draws, as nextU32 would give them one by one. xoshiro128** is inlined with its state in
   * locals: a method call per draw made masks about 3x slower. The returned array is scratch space, valid until the
   * next call.
   */
  u32s(n: number): Uint32Array {
    if (scratch32.length < n) scratch32 = new Uint32Array(Math.max(n, 2 * scratch32.length));
    const out = scratch32;
    const st = this.s;
    let s0 = st[0] | 0,
      s1 = st[1] | 0,
      s2 = st[2] | 0,
      s3 = st[3] | 0;
    for (let i = 0; i < n; i++) {
      const x = Math.imul(s1, 5);
      out[i] = Math.imul((x << 7) | (x >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
    return out.subarray(0, n);
  }

  /**
   * n uniform 16-bit values, two per 32-bit draw (element 2i is the low half of draw i, 2i+1 the high half).
   * The returned array is scratch space, valid until the next call.
   */
  halves(n: number): Uint16Array {
    return new Uint16Array(this.u32s((n + 1) >> 1).buffer, 0, n);
  }

  /**
   * Child-Tuning-F's keep decisions for elements [lo, hi) into the bitset `bits` (bit j at bits[j >> 3], bit j & 7;
   * lo a multiple of 8, bits of the last byte past hi cleared): element j is kept when 16-bit draw j - lo is below
   * `threshold` (keepThreshold). Applying them is applyKeepBits.
   */
  bernoulliBits(bits: Uint8Array, lo: number, hi: number, threshold: number) {
    const u = this.halves(hi - lo);
    for (let j = lo; j < hi; j += 8) {
      let byte = 0;
      for (let k = 0; k < 8 && j + k < hi; k++) byte |= ((u[j + k - lo] - threshold) >>> 31) << k;
      bits[j >> 3] = byte;
    }
  }

  /** Dropout keep-mask already scaled: 1/(1-rate) where kept (16-bit resolution, scale matched), 0 elsewhere. */
  dropoutMask(size: number, rate: number): Float32Array {
    const out = new Float32Array(size);
    const { threshold, scale } = keepThreshold(1 - rate);
    const u = this.halves(size);
    for (let i = 0; i < size; i++) out[i] = ((u[i] - threshold) >>> 31) * scale;
    return out;
  }
}

let scratch32 = new Uint32Array(4096);

/**
 * The state new Rng(seed) starts from (splitmix32), written to out[at], out[at + stride], out[at + 2 stride] and
 * out[at + 3 stride]: where many streams are seeded at once (F's chunks), without building a generator for each.
 */
export function seedState(seed: number, out: Uint32Array, at = 0, stride = 1) {
  let x = seed >>> 0;
  let any = 0;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    any |= out[at + i * stride] = (z ^ (z >>> 16)) >>> 0;
  }
  if (any === 0) out[at] = 1;
}

/** The smallest keep probability a 16-bit draw resolves: the recipe refuses a smaller reserve_p for F. */
export const MIN_KEEP_PROBABILITY = 1 / 65536;

/** A keep probability at 16-bit resolution: keep when a 16-bit draw is below `threshold`; `scale` is 1 / that probability. */
export function keepThreshold(p: number): { threshold: number; scale: number } {
  const threshold = Math.min(65536, Math.max(1, Math.round(p * 65536)));
  return { threshold, scale: 65536 / threshold };
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/**
 * A seed for an independent stream named by integers (for example seed, step, tensor, chunk). Deriving
 * streams this way, instead of carrying generators along, means no generator state has to be checkpointed
 * and the streams do not depend on which thread draws them.
 */
export function streamSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
  }
  return h >>> 0;
}
