import { createRequire } from 'node:module';
import { AUTO_ORDER, threadsFor, type BackendName } from '../engine/backend.js';
import type { Recipe } from '../recipe/types.generated.js';

/** Backend and thread count a stage runs on: both change its floating-point output, so both are hashed. */
export interface StageRuntime {
  backend: BackendName;
  threads: number;
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
export function plannedRuntime(runtime: Recipe['runtime']): StageRuntime {
  // 'auto' takes webgpu only on a hardware adapter, which only opening the device tells: predicted as the CPU.
  const backend =
    runtime.backend !== 'auto'
      ? runtime.backend
      : (AUTO_ORDER.find((b) => b !== 'webgpu' && resolvable(PACKAGE[b])) ?? 'cpu');
  return { backend, threads: threadsFor(runtime.threads, backend) };
}
