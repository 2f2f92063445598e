import { serveWorker } from '../engine/parallel/worker.js';
import { hooksFrom, modifiersFrom } from '../strategies/registry.js';

/** A data-parallel worker thread: the engine's shard loop, with hooks and model modifiers rebuilt through the strategy registry. */
await serveWorker(hooksFrom, modifiersFrom);
