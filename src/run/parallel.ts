import type { EncoderClassifier } from '../engine/model.js';
import { ParallelPool, type PoolOptions } from '../engine/parallel/pool.js';
import { hooksFrom, modifiersFrom } from '../strategies/registry.js';
import type { Strategy } from '../strategies/strategy.js';

export { threadsFor } from '../engine/parallel/pool.js';

/**
 * The engine's thread pool with childtune's strategies: its workers start from ./worker.js, which rebuilds a
 * strategy's hooks from the plain data it was prepared as, through the registry.
 */
export class DataParallel extends ParallelPool {
  static override async start(
    model: EncoderClassifier,
    o: Omit<PoolOptions, 'worker' | 'hooksFrom' | 'modifiersFrom'>,
  ): Promise<DataParallel> {
    return new DataParallel(
      await ParallelPool.launch(model, {
        ...o,
        worker: new URL('./worker.js', import.meta.url),
        hooksFrom,
        modifiersFrom,
      }),
    );
  }

  /** Every thread rebuilds the strategy's hooks from its prepared data. */
  async setStrategy(strategy: Strategy) {
    await this.setHooks(strategy.message);
  }
}
