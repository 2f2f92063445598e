import { createRequire } from 'node:module';
import { AUTO_ORDER, threadsFor, type BackendName } from '../engine/backend.js';
import { chooseKernels, type KernelChoice, type KernelRefusal } from '../engine/native.js';
import type { Recipe } from '../recipe/types.generated.js';

/** Backend, thread count and matrix arithmetic a stage runs on: each changes its floating-point output, so all are hashed. */
export interface StageRuntime {
  backend: BackendName;
  threads: number;
  /**
   * The CPU's matrix arithmetic where it is not exact (fused multiply-adds or bf16). Absent for exact, whose native
   * and wasm kernels agree bit for bit (and which every stage hashed before fma and bf16 existed ran).
   */
  arithmetic?: 'fma' | 'bf16';
}

/** The matrix kernels a recipe's CPU stages use here (undefined off the wasm backend, whose products are tfjs's). */
export function kernelsFor(
  r: Pick<Recipe, 'runtime' | 'training'>,
  backend: BackendName,
  prefer?: string,
): KernelChoice | KernelRefusal | undefined {
  if (backend !== 'wasm') return undefined;
  return chooseKernels(r.runtime.kernels, r.training.precision, prefer);
}

/** A stage's runtime: the backend, its threads, and the arithmetic of `kernels` where it is not exact. */
export function stageRuntime(
  backend: BackendName,
  threads: number,
  kernels?: KernelChoice | KernelRefusal,
): StageRuntime {
  const arithmetic = kernels && 'arithmetic' in kernels ? kernels.arithmetic : 'exact';
  return { backend, threads, ...(arithmetic !== 'exact' && { arithmetic }) };
}

const PACKAGE: Record<BackendName, string> = {
  webgpu: 'webgpu',
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const resolvable = (pkg: string) => {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
};

/**
 * What the run will resolve `runtime` to on this machine, predicted without loading tfjs: 'auto' takes the
 * first installed backend. The executor keys the cache by what it actually ran on, so a wrong prediction
 * costs a recompute, never a wrong reuse.
 */
export function plannedRuntime(r: Pick<Recipe, 'runtime' | 'training'>): StageRuntime {
  const { runtime } = r;
  // 'auto' takes webgpu only on a hardware adapter, which only opening the device tells: predicted as the CPU.
  const backend =
    runtime.backend !== 'auto'
      ? runtime.backend
      : (AUTO_ORDER.find((b) => b !== 'webgpu' && resolvable(PACKAGE[b])) ?? 'cpu');
  return stageRuntime(backend, threadsFor(runtime.threads, backend), kernelsFor(r, backend));
}

/** "avx512f-fma (runtime.kernels: auto: ...)" for the plan; undefined off the CPU's kernels or where refused (validate says why). */
export function plannedKernels(r: Pick<Recipe, 'runtime' | 'training'>): string | undefined {
  const choice = kernelsFor(r, plannedRuntime(r).backend);
  return choice && 'kernel' in choice ? `${choice.kernel} (${choice.why})` : undefined;
}
