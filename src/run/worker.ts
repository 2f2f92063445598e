import { serveWorker } from '../engine/parallel/worker.js';
import { hooksFrom } from '../strategies/registry.js';

/** A data-parallel worker thread: the engine's shard loop, with hooks rebuilt through the strategy registry. */
await serveWorker(hooksFrom);
