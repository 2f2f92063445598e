import { ChildtuneError } from './errors.js';
import * as tf from '@tensorflow/tfjs-core';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export class BackendError extends ChildtuneError {
  constructor(message: string, hint?: string) {
    super('backend', message, { hint });
  }
}

const PACKAGES: Record<BackendName, { pkg: string; tfName: string }> = {
  'tensorflow-gpu': { pkg: '@tensorflow/tfjs-node-gpu', tfName: 'tensorflow' },
  tensorflow: { pkg: '@tensorflow/tfjs-node', tfName: 'tensorflow' },
  wasm: { pkg: '@tensorflow/tfjs-backend-wasm', tfName: 'wasm' },
  cpu: { pkg: '@tensorflow/tfjs-backend-cpu', tfName: 'cpu' },
};

export const AUTO_ORDER: BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

export interface BackendChoice {
  name: BackendName;
  /** Why each preferred backend was not used. */
  skipped: { name: BackendName; why: string }[];
}

let active: BackendName | undefined;

async function tryLoad(name: BackendName): Promise<string | undefined> {
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
    if (active === requested) return { name: requested, skipped: [] };
    const why = await tryLoad(requested);
    if (why)
      throw new BackendError(
        `backend '${requested}' is not available: ${why}`,
        `Install it with: npm install ${PACKAGES[requested].pkg}@4.22.0 (or set runtime.backend: auto)`,
      );
    active = requested;
    return { name: requested, skipped: [] };
  }
  const skipped: BackendChoice['skipped'] = [];
  for (const name of AUTO_ORDER) {
    if (active === name) return { name, skipped };
    const why = await tryLoad(name);
    if (!why) {
      active = name;
      return { name, skipped };
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
    try {
      await import(PACKAGES[name].pkg);
      out.push(name);
    } catch {
      /* not installed */
    }
  }
  return out;
}
