import { readFileSync } from 'node:fs';
import type { AdamWStep, OptimizerPasses } from './optimizer.js';
import { popcount } from './bitset.js';
import { seedState } from './rng.js';
import { nativeKernels } from './native.js';

/**
 * The optimizer's passes (gradient reduce, clip scaling, keep-bit draws and masks, AdamW) in WebAssembly over parameter
 * state that lives in one shared wasm memory (src/engine/wasm/optimizer.wat). They are bit-identical to
 * jsPasses in optimizer.ts (tested), which remain for state too large for a 32-bit memory.
 * Measured on 2.2M elements: AdamW 6.5 ms against 14 in JavaScript (scratch runs, see BENCHMARKS.md for whole
 * steps). F's mask writes its keep bits into the tensor's bitset and applies those bits, so the mask that is counted
 * and recorded is the one applied; four chunks are drawn at once in the lanes of one vector generator and applied as
 * they are drawn, bit-identical to drawing each chunk on its own (2.2M elements, one thread: 0.7-0.95 ns per element
 * for all of it, against 1.34 for a draw one chunk at a time, the apply as a second pass and the count in JavaScript).
 */

const PAGE = 65536;
/** A 32-bit wasm memory addresses at most 4 GiB. */
const MAX_PAGES = 65536;
const aligned = (bytes: number) => Math.ceil(bytes / 16) * 16;

const pagesFor = (lengths: readonly number[]) =>
  Math.max(1, Math.ceil(lengths.reduce((a, n) => a + aligned(4 * n), 0) / PAGE));

/** A shared wasm memory cut into Float32Arrays, sized once for everything it will hold. */
export class SharedArena {
  private used = 0;

  private constructor(readonly memory: WebAssembly.Memory) {}

  /** An arena for arrays of these lengths, or undefined when they do not fit in `maxPages` (4 GiB). */
  static create(lengths: readonly number[], maxPages = MAX_PAGES): SharedArena | undefined {
    const pages = pagesFor(lengths);
    if (pages > maxPages) return undefined;
    return new SharedArena(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
  }

  /** A bitset of n bits (whole 32-bit words). */
  bits(n: number): Uint8Array {
    const words = this.floats(keepBitWords(n));
    return new Uint8Array(words.buffer, words.byteOffset, Math.ceil(n / 8));
  }

  floats(n: number): Float32Array {
    const out = new Float32Array(this.memory.buffer, this.used, n);
    this.used += aligned(4 * n);
    return out;
  }
}

/** 32-bit words of a tensor's keep bits (one bit per element), which share its arena. */
export const keepBitWords = (n: number) => Math.ceil(n / 32);

/** The arrays an arena holds for these tensors: `copies` of each (weights, moments, gradients) and its keep bits. */
export const arenaLengths = (sizes: readonly number[], tensors: readonly number[], copies: number) =>
  tensors.flatMap((t) => [...new Array(copies).fill(sizes[t]), keepBitWords(sizes[t])]);

/** Tensors that share one arena, and whether every shard's gradients are in it too (else shard 0's only). */
export interface ArenaGroup {
  tensors: number[];
  shards: boolean;
}

/**
 * Cuts the parameter tensors, in order, into groups whose state fits one arena each: weights, gradients and
 * moments of a tensor always share an arena, because a pass reads them together. With `copies` arrays per
 * tensor (weights, moments and every shard's gradients, plus its keep bits) when they fit, else `copies - shards + 1`; a tensor
 * too large even alone is left out (its passes run in JavaScript). `extra` is each arena's scratch.
 */
export function planArenas(
  sizes: readonly number[],
  copies: number,
  shards: number,
  extra: readonly number[],
  maxPages = MAX_PAGES,
): { groups: ArenaGroup[]; outside: number[] } {
  const fits = (tensors: number[], k: number) => pagesFor([...arenaLengths(sizes, tensors, k), ...extra]) <= maxPages;
  const groups: ArenaGroup[] = [];
  const outside: number[] = [];
  let open: ArenaGroup | undefined;
  sizes.forEach((_, t) => {
    if (open && fits([...open.tensors, t], open.shards ? copies : copies - shards + 1)) {
      open.tensors.push(t);
      return;
    }
    open = fits([t], copies)
      ? { tensors: [t], shards: true }
      : fits([t], copies - shards + 1)
        ? { tensors: [t], shards: false }
        : undefined;
    if (open) groups.push(open);
    else outside.push(t);
  });
  return { groups, outside };
}

interface Exports {
  scale(g: number, n: number, coef: number): void;
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    stepSize: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    eps: number,
    decay: number,
  ): void;
  fdraw(
    bits: number,
    n: number,
    s0: number,
    s1: number,
    s2: number,
    s3: number,
    threshold: number,
    draws: number,
  ): void;
  fmask4(g: number, bits: number, n: number, states: number, threshold: number, scale: number): number;
  fapply(g: number, bits: number, n: number, scale: number): void;
  reduce2(g: number, g1: number, n: number, w0: number, w1: number, sum: number): number;
  axpy(g: number, gk: number, n: number, w: number): void;
  sumsq(g: number, n: number, sum: number): number;
  pull(x: number, p: number, anchor: number, n: number, coef: number): void;
  decay(p: number, n: number, decay: number): void;
}

let compiled: WebAssembly.Module | undefined;

/** The passes, for one thread, over arrays of one arena. `draws` is this thread's scratch for random keep draws. */
export class OptimizerKernels implements OptimizerPasses {
  private readonly k: Exports;
  private readonly stateWords: Uint32Array;
  private readonly oneState = new Uint32Array(4);
  /** The chunks' generator states for the native pass, four words each. */
  private chunkStates = new Uint32Array(64);

  constructor(
    memory: WebAssembly.Memory,
    private readonly draws: Float32Array,
  ) {
    // fmask4 reads the four generator states from the start of the draw scratch, and uses the next 16 words
    // (fdraw passes its state as arguments).
    this.stateWords = new Uint32Array(draws.buffer, draws.byteOffset, Math.min(32, draws.length));
    compiled ??= new WebAssembly.Module(readFileSync(new URL('./wasm/optimizer.wasm', import.meta.url)));
    this.k = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as Exports;
  }

  /** Elements of scratch needed for chunks of n mask decisions: their draws, and at least fmask4's 32 words. */
  static drawsFor(n: number): number {
    return Math.max(32, (n + 1) >> 1);
  }

  scale(g: Float32Array, lo: number, hi: number, coef: number) {
    this.k.scale(g.byteOffset + 4 * lo, hi - lo, coef);
  }

  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lo: number, hi: number, a: AdamWStep) {
    const k = [a.stepSize, a.b1, 1 - a.b1, a.b2, 1 - a.b2, a.eps, a.decay] as const;
    // The native pass computes the same bits, two or four times the elements per instruction.
    const native = nativeKernels().native?.adamw;
    if (native) return native(p, g, m, v, lo, hi, ...k);
    const at = (x: Float32Array) => x.byteOffset + 4 * lo;
    this.k.adamw(at(p), at(g), at(m), at(v), hi - lo, ...k);
  }

  reduce2(g: Float32Array, g1: Float32Array, lo: number, hi: number, w0: number, w1: number, sum: number): number {
    return this.k.reduce2(g.byteOffset + 4 * lo, g1.byteOffset + 4 * lo, hi - lo, w0, w1, sum);
  }

  axpy(g: Float32Array, gk: Float32Array, lo: number, hi: number, w: number) {
    this.k.axpy(g.byteOffset + 4 * lo, gk.byteOffset + 4 * lo, hi - lo, w);
  }

  sumsq(g: Float32Array, lo: number, hi: number, sum: number): number {
    return this.k.sumsq(g.byteOffset + 4 * lo, hi - lo, sum);
  }

  /** x, p and the anchor in this arena (the pool keeps a tensor's anchor beside its weights). */
  pull(x: Float32Array, p: Float32Array, anchor: Float32Array, lo: number, hi: number, coef: number) {
    const at = (y: Float32Array) => y.byteOffset + 4 * lo;
    this.k.pull(at(x), at(p), at(anchor), hi - lo, coef);
  }

  decay(p: Float32Array, lo: number, hi: number, decay: number) {
    this.k.decay(p.byteOffset + 4 * lo, hi - lo, decay);
  }

  /**
   * Chunks of at most 2 x draws.length elements; lo and the chunk length multiples of 8, `g` and `bits` in this
   * arena. Four whole chunks at a time are drawn in the four lanes of one vector generator and applied as they are
   * drawn (fmask4); the rest are drawn one by one (fdraw), then applied (fapply).
   */
  fmask(
    g: Float32Array,
    bits: Uint8Array,
    lo: number,
    hi: number,
    chunk: number,
    seeds: readonly number[],
    threshold: number,
    scale: number,
  ): number {
    // The native pass draws and applies the same bits, sixteen chunks at a time.
    const native = nativeKernels().native?.fmask;
    if (native) {
      if (this.chunkStates.length < 4 * seeds.length) this.chunkStates = new Uint32Array(4 * seeds.length);
      seeds.forEach((seed, i) => seedState(seed, this.chunkStates, 4 * i));
      return native(g, bits, lo, hi, chunk, this.chunkStates, threshold, scale);
    }
    if (OptimizerKernels.drawsFor(chunk) > this.draws.length)
      throw new Error(`F mask chunk of ${chunk} elements exceeds the draw scratch`);
    let kept = 0;
    let i = 0;
    let start = lo;
    for (; start + 4 * chunk <= hi; start += 4 * chunk, i += 4) {
      for (let k = 0; k < 4; k++) seedState(seeds[i + k], this.stateWords, k, 4);
      const at = this.stateWords.byteOffset;
      kept += this.k.fmask4(g.byteOffset + 4 * start, bits.byteOffset + (start >> 3), chunk, at, threshold, scale);
    }
    if (start === hi) return kept;
    const rest = start;
    for (; start < hi; start += chunk, i++) {
      const s = this.oneState;
      seedState(seeds[i], s);
      const n = Math.min(hi, start + chunk) - start;
      this.k.fdraw(bits.byteOffset + (start >> 3), n, s[0], s[1], s[2], s[3], threshold, this.draws.byteOffset);
    }
    this.fapply(g, bits, rest, hi, scale);
    return kept + popcount(bits.subarray(rest >> 3), hi - rest);
  }

  /** lo a multiple of 8 and `bits` in this arena. */
  fapply(g: Float32Array, bits: Uint8Array, lo: number, hi: number, scale: number) {
    const native = nativeKernels().native?.fapply;
    if (native) return native(g, bits, lo, hi, scale);
    this.k.fapply(g.byteOffset + 4 * lo, bits.byteOffset + (lo >> 3), hi - lo, scale);
  }
}
