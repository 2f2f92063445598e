import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * The native matrix kernels (native/gemm.c, a Node-API addon built by scripts/build-native.mjs), when this
 * machine has them: x86-64 with AVX-512 or AVX2, and a compiler at install. They compute exactly what the
 * wasm kernel computes (same k order, no fused multiply-add), so which path runs never changes a result.
 * CHILDTUNE_NATIVE=0 turns them off; CHILDTUNE_NATIVE_KERNEL=avx2 picks the AVX2 kernel on an AVX-512 CPU.
 */

interface Addon {
  /** See js_gemm in native/gemm.c. */
  gemm(kernel: number, heap: ArrayBuffer, ...args: number[]): void;
  /** Kernel names by index; null where this CPU lacks the instructions. */
  kernels: (string | null)[];
}

export interface NativeGemm {
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
  if (!existsSync(ADDON)) {
    const built = existsSync(BUILD_STATUS)
      ? (JSON.parse(readFileSync(BUILD_STATUS, 'utf8')) as { why: string }).why
      : 'npm run build did not run scripts/build-native.mjs';
    return `no native build: ${built}`;
  }
  try {
    return (addon = createRequire(import.meta.url)(ADDON.pathname) as Addon);
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
    native: { kernel, gemm: (heap, ...args) => a.gemm(index, heap, ...args) },
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

/** Picks the kernels for this thread: 'wasm' or a native name; undefined restores the default (tests and the bench compare them in one process). */
export function selectKernel(name: string | undefined) {
  chosen = name;
  status = undefined;
}
