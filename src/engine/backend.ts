import os from 'node:os';
import { ChildtuneError } from './errors.js';
import * as tf from '@tensorflow/tfjs-core';
import { deviceLabel, installHint, openDevice, type DeviceInfo } from './webgpu/device.js';

export type BackendName = 'webgpu' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export class BackendError extends ChildtuneError {
  constructor(message: string, hint?: string) {
    super('backend', message, { hint });
  }
}

const PACKAGES: Record<BackendName, { pkg: string; tfName: string }> = {
  webgpu: { pkg: '@tensorflow/tfjs-backend-webgpu', tfName: 'webgpu' },
  'tensorflow-gpu': { pkg: '@tensorflow/tfjs-node-gpu', tfName: 'tensorflow' },
  tensorflow: { pkg: '@tensorflow/tfjs-node', tfName: 'tensorflow' },
  wasm: { pkg: '@tensorflow/tfjs-backend-wasm', tfName: 'wasm' },
  cpu: { pkg: '@tensorflow/tfjs-backend-cpu', tfName: 'cpu' },
};

/** 'webgpu' only on a hardware adapter; 'tensorflow-gpu' never (see REFUSED). */
export const AUTO_ORDER: BackendName[] = ['webgpu', 'tensorflow', 'wasm', 'cpu'];

/**
 * Backends that are refused rather than run: no test runs them (tfjs-node-gpu downloads libtensorflow at install, which
 * our machines and CI cannot), and training on a path no test has run could be silently different.
 */
const REFUSED: Partial<Record<BackendName, { why: string; hint: string }>> = {
  'tensorflow-gpu': {
    why: 'it is not supported: no test runs childtune on @tensorflow/tfjs-node-gpu, so its results are unverified',
    hint: "Use runtime.backend: webgpu for the GPU (Vulkan, Metal or D3D12 through Dawn; see the README's GPU section).",
  },
};

/**
 * Thread count for a recipe's runtime.threads (0 = every core): the TensorFlow backends parallelise on their own, and
 * a GPU is one shard.
 */
export function threadsFor(requested: number, backend: BackendName): number {
  if (backend === 'tensorflow' || backend === 'tensorflow-gpu' || backend === 'webgpu') return 1;
  return requested > 0 ? requested : os.availableParallelism();
}

export interface BackendChoice {
  name: BackendName;
  /** Why each preferred backend was not used. */
  skipped: { name: BackendName; why: string }[];
  /** The GPU, when the backend is webgpu. */
  device?: DeviceInfo;
}

let active: BackendName | undefined;
let activeDevice: DeviceInfo | undefined;

/** Tfjs's webgpu backend on the adapter Dawn finds; `explicit`: asked for by name, so a software adapter will do. */
async function loadWebgpu(explicit: boolean): Promise<string | undefined> {
  const opened = await openDevice(explicit);
  if ('missing' in opened) return opened.missing;
  // Every op on the device: tfjs would otherwise run small ones on the CPU and copy their inputs back and forth.
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  if (!(await tf.setBackend('webgpu'))) return `the webgpu backend did not initialise on ${deviceLabel(opened.info)}`;
  await tf.ready();
  tf.env().set('PROD', true);
  activeDevice = opened.info;
  return undefined;
}

/** The GPU the active backend runs on (undefined off webgpu). */
export const activeDeviceInfo = () => (active === 'webgpu' ? activeDevice : undefined);

async function tryLoad(name: BackendName, explicit = false): Promise<string | undefined> {
  const refused = REFUSED[name];
  if (refused) return refused.why;
  if (name === 'webgpu') return loadWebgpu(explicit);
  try {
    await import(PACKAGES[name].pkg);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
      ? `${PACKAGES[name].pkg} is not installed`
      : `${PACKAGES[name].pkg} failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  try {
    const ok = await tf.setBackend(PACKAGES[name].tfName);
    if (!ok) return `${PACKAGES[name].pkg} is installed but did not initialise`;
    await tf.ready();
    // PROD silences tfjs's console chatter ("Hi, looks like you are running TensorFlow.js in Node.js").
    tf.env().set('PROD', true);
  } catch (e) {
    return `${PACKAGES[name].pkg} did not initialise: ${(e as Error).message.split('\n')[0]}`;
  }
  return undefined;
}

/** Selects (and initialises) a tfjs backend; 'auto' takes the first that loads, in AUTO_ORDER. */
export async function selectBackend(requested: BackendName | 'auto'): Promise<BackendChoice> {
  if (requested !== 'auto') {
    if (active === requested) return { name: requested, skipped: [], device: activeDeviceInfo() };
    const why = await tryLoad(requested, true);
    if (why)
      throw new BackendError(
        `backend '${requested}' is not available: ${why}`,
        REFUSED[requested]?.hint ??
          (requested === 'webgpu'
            ? `${installHint} Check the GPU driver, or set runtime.backend: auto to train on the CPU.`
            : `Install it with: npm install ${PACKAGES[requested].pkg}@4.22.0 (or set runtime.backend: auto)`),
      );
    active = requested;
    return { name: requested, skipped: [], device: activeDeviceInfo() };
  }
  const skipped: BackendChoice['skipped'] = [];
  for (const name of AUTO_ORDER) {
    // A software adapter opened by name earlier in this process is still not one auto takes.
    if (name === 'webgpu' && activeDevice?.software) {
      skipped.push({ name, why: `the only adapter is ${deviceLabel(activeDevice)}` });
      continue;
    }
    if (active === name) return { name, skipped, device: activeDeviceInfo() };
    const why = await tryLoad(name);
    if (!why) {
      active = name;
      return { name, skipped, device: activeDeviceInfo() };
    }
    skipped.push({ name, why });
  }
  throw new BackendError(
    'no tfjs backend could be initialised',
    'Reinstall with npm ci; @tensorflow/tfjs-backend-cpu should always load.',
  );
}

/** Backends whose package is importable here (for tests that exercise each one). */
export async function installedBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const name of AUTO_ORDER) {
    if (name === 'webgpu') continue;
    try {
      await import(PACKAGES[name].pkg);
      out.push(name);
    } catch {
      /* not installed */
    }
  }
  return out;
}
