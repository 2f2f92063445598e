import fs, { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { TMP_SUFFIX } from './files.js';

/**
 * The native matrix kernels (native/gemm.c, a Node-API addon built by scripts/build-native.mjs), when this
 * machine has them: x86-64 with AVX-512 or AVX2, and a compiler at install. Three arithmetics:
 * - exact (avx512f, avx2): what the wasm kernel computes, bit for bit (same k order, no fused multiply-add), so
 *   native or wasm never changes a result;
 * - fma (avx512f-fma, avx2-fma): the same order with fused multiply-adds, twice the exact kernels' rate on CPUs
 *   whose multiply, add and FMA share the same ports (Intel's server cores); results within float rounding;
 * - bf16 (amx-bf16, else avx512bf16): operands rounded to bfloat16, float32 sums (training.precision: bf16).
 * CHILDTUNE_NATIVE=0 turns them off; CHILDTUNE_NATIVE_KERNEL=avx2 picks the AVX2 kernel on an AVX-512 CPU (and
 * avx2-fma for fma), for tests and the bench; CHILDTUNE_NATIVE_ADDON loads another build of the addon (the tests'
 * build with AMX emulated: scripts/build-native.mjs --amx-emulation).
 */

/**
 * Passes besides the products that the addon runs at the vector width of the run's matrix kernel (AVX-512 or AVX2),
 * each computing what its WebAssembly or JavaScript form computes, bit for bit.
 */
interface NativePasses {
  /** kernels.wat's Erf-GELU over n floats at byte offsets x (in), y and d (out) of `heap`. */
  gelu?(heap: ArrayBuffer, x: number, y: number, d: number, n: number): void;
  /** A pass's gradients into the step's: g = w t, or g + w t with `accumulate`, in doubles rounded once (model.ts). */
  weighted?(g: Float32Array, t: Float32Array, w: number, accumulate: boolean): void;
  /** optimizer.wat's AdamW over [lo, hi) of p, g, m, v (k: step size, b1, 1 - b1, b2, 1 - b2, eps, decay). */
  adamw?(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    lo: number,
    hi: number,
    ...k: number[]
  ): void;
  /**
   * Child-Tuning-F's mask over [lo, hi) of g in chunks of `chunk` (optimizer.wat's fdraw then fapply per chunk, chunk
   * i's generator state at states[4i, 4i + 4), as seedState leaves it), sixteen chunks at a time; returns how many
   * were kept. AVX-512 (with AVX-512BW) only.
   */
  fmask?(
    g: Float32Array,
    bits: Uint8Array,
    lo: number,
    hi: number,
    chunk: number,
    states: Uint32Array,
    threshold: number,
    scale: number,
  ): number;
  /** optimizer.wat's fapply over [lo, hi) of g (lo a multiple of 8). */
  fapply?(g: Float32Array, bits: Uint8Array, lo: number, hi: number, scale: number): void;
  /** kernels.ts addIndexedRows's loop (rows it addresses outside dst or src throw a RangeError). */
  addIndexedRows?: AddIndexedRows;
}

/**
 * dst's row (dstRows ? dstRows[t] : t) += weight x src's row (srcRows ? srcRows[t] : t) for t in [0, n), in that
 * order, rows `width` floats long.
 */
export type AddIndexedRows = (
  dst: Float32Array,
  dstRows: Int32Array | null,
  src: Float32Array,
  srcRows: Int32Array | null,
  n: number,
  width: number,
  weight: number,
) => void;

interface Addon {
  /** The passes per vector width this CPU runs. */
  passes: { avx512f?: NativePasses; avx2?: NativePasses };
  /** See js_gemm in native/gemm.c. */
  gemm(kernel: number, heap: ArrayBuffer, ...args: number[]): void;
  /** GFLOP/s of a kernel's multiply-add on this thread's core, over `iterations` rounds (js_peak). */
  peak(kernel: number, iterations: number): number;
  /** Kernel names by index; null where this CPU lacks the instructions. */
  kernels: (string | null)[];
  /** Cache block sizes in floats: A blocks are mc x kc, B blocks kc x nc. */
  blocks: { kc: number; mc: number; nc: number };
  cpu: Cpu;
}

/** The CPU as CPUID names it. */
export interface Cpu {
  /** AuthenticAMD, GenuineIntel, ... */
  vendor: string;
  family: number;
  model: number;
  stepping: number;
}

export type Arithmetic = 'exact' | 'fma' | 'bf16';

/** The arithmetic of a kernel name ('wasm' is exact). */
export const arithmeticOf = (kernel: string): Arithmetic =>
  kernel.endsWith('-fma') ? 'fma' : kernel.endsWith('bf16') ? 'bf16' : 'exact';

export interface NativeGemm extends NativePasses {
  /** Kernel name, e.g. avx512f. */
  kernel: string;
  gemm(heap: ArrayBuffer, ...args: number[]): void;
}

export interface NativeStatus {
  native?: NativeGemm;
  /** Which matrix kernels run, and why: for the run log. */
  why: string;
}

const ADDON = new URL('../../native/childtune.node', import.meta.url);
const BUILD_STATUS = new URL('../../native/status.json', import.meta.url);

let addon: Addon | undefined;
let status: NativeStatus | undefined;
/** A kernel chosen in this process by selectKernel, over the environment's default. */
let chosen: string | undefined;

const wasmPath = (why: string): NativeStatus => ({ why: `wasm matrix kernels (${why})` });

/** The addon, or why it is unavailable. */
function loadAddon(): Addon | string {
  if (addon) return addon;
  const other = process.env.CHILDTUNE_NATIVE_ADDON;
  const file = other || ADDON.pathname;
  if (other && !existsSync(other)) return `CHILDTUNE_NATIVE_ADDON names ${other}, which does not exist`;
  if (!existsSync(file)) {
    const built = existsSync(BUILD_STATUS)
      ? (JSON.parse(readFileSync(BUILD_STATUS, 'utf8')) as { why: string }).why
      : 'npm run build did not run scripts/build-native.mjs';
    return `no native build: ${built}`;
  }
  try {
    return (addon = createRequire(import.meta.url)(file) as Addon);
  } catch (e) {
    return `the native build did not load: ${(e as Error).message.split('\n')[0]}`;
  }
}

function load(wanted: string | undefined): NativeStatus {
  if (wanted === 'wasm') return wasmPath('selected');
  if (process.env.CHILDTUNE_NATIVE === '0' && !chosen) return wasmPath('CHILDTUNE_NATIVE=0');
  const a = loadAddon();
  if (typeof a === 'string') return wasmPath(a);
  const index = wanted ? a.kernels.indexOf(wanted) : a.kernels.findIndex((k) => k !== null);
  if (index < 0)
    return wasmPath(
      wanted
        ? `${wanted} is not a kernel this CPU runs (${a.kernels.filter(Boolean).join(', ') || 'none'})`
        : 'this CPU has neither AVX-512 nor AVX2',
    );
  const kernel = a.kernels[index]!;
  return {
    native: {
      kernel,
      gemm: (heap, ...args) => a.gemm(index, heap, ...args),
      // Every AMX CPU has AVX-512 (without it, as under the tests' emulated AMX, the wasm forms run).
      ...a.passes[/^(avx512|amx)/.test(kernel) ? 'avx512f' : 'avx2'],
    },
    why: `native ${kernel} matrix kernels`,
  };
}

/** The matrix kernels this thread runs, and why; decided once per thread (CHILDTUNE_NATIVE_KERNEL names one). */
export function nativeKernels(): NativeStatus {
  return (status ??= load(chosen ?? process.env.CHILDTUNE_NATIVE_KERNEL));
}

/** Native kernel names this CPU runs (empty without the addon). */
export function nativeKernelNames(): string[] {
  const a = loadAddon();
  return typeof a === 'string' ? [] : a.kernels.filter((k): k is string => k !== null);
}

/** The native kernels' cache blocks (tests reach past each), or undefined without the addon. */
export function nativeBlocks(): Addon['blocks'] | undefined {
  const a = loadAddon();
  return typeof a === 'string' ? undefined : a.blocks;
}

/** Native kernel names of one arithmetic, widest first (CHILDTUNE_NATIVE_KERNEL first where it names one of them). */
function kernelsOf(arithmetic: Arithmetic): string[] {
  const names = nativeKernelNames().filter((k) => arithmeticOf(k) === arithmetic);
  const wanted = process.env.CHILDTUNE_NATIVE_KERNEL;
  return wanted && names.includes(wanted) ? [wanted, ...names.filter((k) => k !== wanted)] : names;
}

/**
 * GFLOP/s of native kernels' multiply-add on one core, in this thread's CPU time: the best of `rounds` short
 * register-only loops (about 4 ms each) per kernel, the kernels taking turns so that a slower spell of the machine
 * hits each alike.
 */
export function kernelPeaks(kernels: string[], rounds = 5): number[] {
  const a = loadAddon();
  if (typeof a === 'string') throw new Error(`no native kernels: ${a}`);
  const indices = kernels.map((k) => {
    const i = a.kernels.indexOf(k);
    if (i < 0) throw new Error(`${k} is not a kernel this CPU runs`);
    return i;
  });
  const best = kernels.map(() => 0);
  for (let r = 0; r < rounds; r++)
    indices.forEach((index, j) => (best[j] = Math.max(best[j], a.peak(index, 1_000_000))));
  return best;
}

/** How the runtime.kernels setting chooses; training.precision bf16 needs the bf16 kernel whatever it says. */
export type KernelSetting = 'auto' | 'exact' | 'fma';

export interface KernelChoice {
  /** A native kernel name, or 'wasm'. */
  kernel: string;
  arithmetic: Arithmetic;
  /** Why this kernel: for the plan, the run log and results.json. */
  why: string;
  /** What auto measured, for the log only: rates vary from run to run, and results.json must not. */
  measured?: string;
}

export interface KernelRefusal {
  refused: string;
  hint: string;
}

/**
 * Fused kernels are chosen by `auto` when their measured rate beats the exact kernels' by this factor: Intel's
 * server cores measure about 2 (multiply, add and FMA share two ports), AMD Zen 4 and 5 about 1 (separate pipes).
 * A Zen 3 VM measured 1.02-1.47 between processes (1.16-1.34 in six of them, the exact kernel's rate bimodal), and
 * there the fused kernels ran a BERT-small step 1.35x as fast: so fma wherever it is 10% faster, exact for its
 * bit-for-bit equality with the wasm path only where fma gains less.
 */
const FMA_GAIN = 1.1;

/**
 * Where auto keeps each CPU's measurement: CHILDTUNE_KERNELS_CACHE, else childtune/ under XDG_CACHE_HOME or ~/.cache.
 * The register-only rates are noisy on a shared machine: on a Zen 3 VM fused over exact went from 1.02 to 1.47
 * between processes, across FMA_GAIN, and reruns of one recipe trained with different kernels. Measured once and
 * kept (as FFTW keeps its wisdom), every later run on the machine chooses alike; removing the file measures again.
 */
export const kernelsCacheDir = (env = process.env) =>
  env.CHILDTUNE_KERNELS_CACHE || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'childtune');

export interface Measurement {
  exact: number;
  fma: number;
  /** Where the measurement is kept, or why it is not: for the run log. */
  kept: string;
}

/** Measurements no file could keep, so that this process at least chooses alike every time. */
const unkept = new Map<string, Measurement>();

/**
 * The measurement kept in `dir` under `key`, or `measure()`'s, kept there for later runs. A new file is linked into
 * place, which fails where another run kept one first: that one is used, so two runs measuring at once agree.
 * An unreadable file is measured again and replaced; a folder that cannot be written measures once per process.
 */
export function keptMeasurement(dir: string, key: string, measure: () => { exact: number; fma: number }): Measurement {
  const file = path.join(dir, `kernels-${key}.json`);
  const read = (): Measurement | undefined => {
    try {
      const m = JSON.parse(fs.readFileSync(file, 'utf8')) as { exact: unknown; fma: unknown; date: unknown };
      if ([m.exact, m.fma].every((x) => typeof x === 'number' && x > 0))
        return {
          exact: m.exact as number,
          fma: m.fma as number,
          kept: `as measured ${typeof m.date === 'string' ? `on ${m.date}` : 'earlier'}, kept in ${file}`,
        };
    } catch {
      // missing or unreadable: measured below
    }
  };
  const found = read() ?? unkept.get(file);
  if (found) return found;
  const unreadable = fs.existsSync(file);
  const rates = measure();
  const tmp = file + TMP_SUFFIX;
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(tmp, JSON.stringify({ ...rates, date: new Date().toISOString().slice(0, 10) }) + '\n');
    // Not publish(): this file is no run's output, and the fault tests count a run's renames.
    if (unreadable) fs.renameSync(tmp, file);
    else
      try {
        fs.linkSync(tmp, file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    const kept = read();
    if (kept) return unreadable ? { ...kept, kept: `${kept.kept} (replaced an unreadable file)` } : kept;
    throw new Error('the file kept reads back unreadable');
  } catch (e) {
    const m = { ...rates, kept: `measured in this process; not kept in ${file}: ${(e as Error).message}` };
    unkept.set(file, m);
    return m;
  } finally {
    if (fs.existsSync(tmp)) fs.rmSync(tmp);
  }
}

/**
 * The matrix kernels a run uses on this machine. `auto` takes the exact kernels unless the fused ones are clearly
 * faster on this machine (keptMeasurement), and `prefer` (the kernel a resumed checkpoint trained with) first when
 * this CPU runs it and it has the arithmetic asked for, so a resume continues bit for bit where it can.
 */
export function chooseKernels(
  setting: KernelSetting,
  precision: 'fp32' | 'bf16',
  prefer?: string,
): KernelChoice | KernelRefusal {
  const off = process.env.CHILDTUNE_NATIVE === '0' ? 'CHILDTUNE_NATIVE=0' : undefined;
  const addon = loadAddon();
  const missing = off ?? (typeof addon === 'string' ? addon : undefined);
  const have = (arithmetic: Arithmetic) => (missing ? [] : kernelsOf(arithmetic));
  // The checkpoint's kernel where this CPU has it and it has the arithmetic chosen; `why` names it only where it
  // changed the choice, so a resume on the machine that started the run records what the run would have.
  const pick = (
    arithmetic: Arithmetic,
    reason: string | ((kernel: string) => string),
    measuredRates?: string,
  ): KernelChoice => {
    const names = have(arithmetic);
    const kernel = prefer && names.includes(prefer) ? prefer : names[0];
    const why = typeof reason === 'string' ? reason : reason(kernel);
    return {
      kernel,
      arithmetic,
      why: kernel !== names[0] ? `${why}; the kernel the checkpoint trained with` : why,
      ...(measuredRates && { measured: measuredRates }),
    };
  };
  if (precision === 'bf16') {
    if (have('bf16').length)
      return pick(
        'bf16',
        (kernel) =>
          `training.precision: bf16 (${kernel === 'amx-bf16' ? 'AMX tiles' : 'AVX512_BF16 dot products'}, float32 sums)`,
      );
    return {
      refused: `training.precision: bf16 needs a CPU with AVX512_BF16 (or AMX) and the native kernels; ${missing ? `the native kernels are off here (${missing})` : `this CPU runs ${nativeKernelNames().join(', ') || 'no native kernel'}`}, and bf16 is never emulated`,
      hint: 'Use training.precision: fp32 on this machine, or run on a CPU with AVX512_BF16 (Intel Cooper Lake, Sapphire Rapids and later, whose AMX tiles run it fastest; AMD Zen 4 and later).',
    };
  }
  const exact = (why: string, measuredRates?: string): KernelChoice =>
    have('exact').length
      ? pick('exact', why, measuredRates)
      : { kernel: 'wasm', arithmetic: 'exact', why: `${missing ?? 'no native exact kernel here'}; ${why}` };
  if (setting === 'exact') return exact('runtime.kernels: exact (bit for bit the wasm kernels)');
  const fused = have('fma');
  if (setting === 'fma') {
    if (fused.length) return pick('fma', 'runtime.kernels: fma');
    return {
      refused: `runtime.kernels: fma needs the native FMA kernels; ${missing ? `the native kernels are off here (${missing})` : 'this CPU has no AVX2 FMA or AVX-512'}`,
      hint: 'Use runtime.kernels: auto or exact.',
    };
  }
  if (!fused.length || !have('exact').length) return exact('runtime.kernels: auto: no fused kernels here');
  const { vendor, family, model, stepping } = (addon as Addon).cpu;
  const measured = keptMeasurement(
    kernelsCacheDir(),
    [vendor, family, model, stepping, ...nativeKernelNames()].join('-'),
    () => {
      // The widest kernel of each arithmetic, whatever CHILDTUNE_NATIVE_KERNEL asks of this process: the file
      // speaks for the machine.
      const widest = (a: Arithmetic) => nativeKernelNames().find((k) => arithmeticOf(k) === a)!;
      const [exactRate, fmaRate] = kernelPeaks([widest('exact'), widest('fma')]);
      return { exact: exactRate, fma: fmaRate };
    },
  );
  const rates = `fused ${measured.fma.toFixed(0)} against exact ${measured.exact.toFixed(0)} GFLOP/s a core, ${measured.kept}`;
  const fast = measured.fma >= FMA_GAIN * measured.exact;
  const decided: Arithmetic = fast ? 'fma' : 'exact';
  // A resume keeps its checkpoint's arithmetic where this CPU runs it, whatever the measurement says here.
  const kept = !!prefer && arithmeticOf(prefer) !== decided && have(arithmeticOf(prefer)).includes(prefer);
  const why = kept
    ? 'runtime.kernels: auto; the kernel the checkpoint trained with'
    : `runtime.kernels: auto: fused multiply-adds measured ${fast ? '' : 'no '}faster on this machine`;
  return (kept ? arithmeticOf(prefer!) : decided) === 'fma' ? pick('fma', why, rates) : exact(why, rates);
}

/** "native avx512f-fma matrix kernels (why)" or "wasm matrix kernels (why)", for the run log. */
export const describeKernels = (c: KernelChoice) =>
  `${c.kernel === 'wasm' ? 'wasm' : `native ${c.kernel}`} matrix kernels (${c.why}${c.measured ? `: ${c.measured}` : ''})`;

/** Picks the kernels for this thread: 'wasm' or a native name; undefined restores the default (tests and the bench compare them in one process). */
export function selectKernel(name: string | undefined) {
  chosen = name;
  status = undefined;
}
