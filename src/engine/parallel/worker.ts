import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend } from '../backend.js';
import { EncoderClassifier } from '../model.js';
import { selectKernel } from '../native.js';
import type { ModifiersFrom } from '../modules/modifier.js';
import type { HooksFrom } from './hooks.js';
import type { WorkerInit } from './protocol.js';
import { ShardExecutor } from './shard.js';

/**
 * Runs a data-parallel worker thread: its own tfjs backend and a model replica over the shared weights. Called
 * by the worker's entry file, which supplies how to rebuild the hooks from the plain data they arrive as.
 */
export async function serveWorker(hooksFrom: HooksFrom, modifiersFrom: ModifiersFrom) {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  try {
    await selectBackend(init.backend);
    if (init.kernel) selectKernel(init.kernel);
    const model = new EncoderClassifier(init.config, init.numLabels, init.state.values, modifiersFrom(init.modifiers));
    const executor = new ShardExecutor(model, init.shard, init.state, init.segments, init.decays, hooksFrom);
    port.on('message', (req) => {
      try {
        port.postMessage({ ok: executor.handle(req) });
      } catch (e) {
        port.postMessage({ error: (e as Error).message });
      }
    });
    port.postMessage({ ready: true });
  } catch (e) {
    port.postMessage({ error: (e as Error).message });
  }
}
