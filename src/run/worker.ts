import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend } from '../engine/backend.js';
import { EncoderClassifier } from '../engine/model.js';
import { ShardExecutor, type WorkerInit } from './parallel.js';

/** A data-parallel worker thread: its own tfjs backend and a model replica over the shared weights. */
const init = workerData as WorkerInit;
const port = parentPort!;
try {
  await selectBackend(init.backend);
  const model = new EncoderClassifier(init.config, init.numLabels, init.state.values);
  const executor = new ShardExecutor(model, init.shard, init.state, init.segments, init.decays);
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
