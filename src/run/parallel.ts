import type { BackendName } from '../engine/backend.js';
import type { EncoderClassifier } from '../engine/model.js';
import { ParallelPool, type PoolOptions } from '../engine/parallel/pool.js';
import type { TrainingPool } from '../engine/training-pool.js';
import { DevicePool } from '../engine/webgpu/pool.js';
import { hooksFrom, modifiersFrom } from '../strategies/registry.js';
import type { Strategy } from '../strategies/strategy.js';

export { threadsFor } from '../engine/backend.js';

/** The pool a run trains on, with childtune's strategies: the CPU's threads or one GPU. */
export type RunPool = TrainingPool & {
  /** Every shard rebuilds the strategy's hooks from its prepared data. */
  setStrategy(strategy: Strategy): Promise<void>;
};

type StartOptions = Omit<PoolOptions, 'worker' | 'hooksFrom' | 'modifiersFrom'> & { backend: BackendName };

/**
 * The engine's thread pool with childtune's strategies: its workers start from ./worker.js, which rebuilds a
 * strategy's hooks from the plain data it was prepared as, through the registry.
 */
export class DataParallel extends ParallelPool implements RunPool {
  static override async start(model: EncoderClassifier, o: StartOptions): Promise<DataParallel> {
    return new DataParallel(
      await ParallelPool.launch(model, {
        ...o,
        worker: new URL('./worker.js', import.meta.url),
        hooksFrom,
        modifiersFrom,
      }),
    );
  }

  async setStrategy(strategy: Strategy) {
    await this.setHooks(strategy.message);
  }
}

/** Starts the pool for `backend`: one GPU on webgpu, else the CPU's threads. */
export async function startPool(model: EncoderClassifier, o: StartOptions): Promise<RunPool> {
  if (o.backend !== 'webgpu') return DataParallel.start(model, o);
  const pool = await DevicePool.start(model, { adam: o.adam, anchor: o.anchor, hooksFrom });
  return Object.assign(pool, { setStrategy: (s: Strategy) => pool.setHooks(s.message) });
}
