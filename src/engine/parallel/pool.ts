import { Worker } from 'node:worker_threads';
import type { BackendName } from '../backend.js';
import { sliceBatch } from '../batch.js';
import type { Batch, EncoderClassifier } from '../model.js';
import { adamwStep, type AdamWSettings } from '../optimizer.js';
import { modifierData, type ModifiersFrom } from '../modules/modifier.js';
import { trains } from '../modules/param.js';
import type { MicroBatch, TrainingPool } from '../training-pool.js';
import type { HooksFrom, UpdateObserver } from './hooks.js';
import { partition, type Segment } from './partition.js';
import type { Reply, Request, WorkerInit } from './protocol.js';
import { concat, ShardExecutor } from './shard.js';
import { allocateSharedState, type SharedState } from './state.js';

/**
 * Data parallelism over worker threads. tfjs's wasm backend runs one thread in Node, so each worker holds
 * its own backend and a replica of the model whose weights, gradients and Adam moments live in shared
 * memory. A step is three rounds, each run by every thread at once (the main thread is shard 0):
 * 1. grad: forward and backward over its rows of the batch, into its own gradient buffer;
 * 2. reduce: over its slice of the parameters, the batch-mean gradient into shard 0's buffer, plus the
 *    slice's sum of squares (for global-norm clipping);
 * 3. update: over the same slice, clip, the hooks' gradient transform, then AdamW; the replicas re-read the weights.
 * Results depend on the thread count only through the dropout streams (one per shard) and the order of the
 * gradient sum; everything else is the same for any count. The pool knows no training method: the hooks
 * (hooks.ts) carry it, rebuilt in every thread from plain data by `hooksFrom`.
 */
export interface PoolOptions {
  threads: number;
  backend: BackendName;
  /** The matrix kernels every worker selects on the wasm backend (a native kernel name or 'wasm'); the default's otherwise. */
  kernel?: string;
  adam: AdamWSettings;
  /** Pages per arena (64 KiB each; default 4 GiB), smaller in tests. */
  arenaPages?: number;
  /** The worker thread's entry file: it calls serveWorker with the same `hooksFrom`. */
  worker: URL;
  hooksFrom: HooksFrom;
  /** How the worker's entry file rebuilds the model's modifiers (it passes the same function to serveWorker). */
  modifiersFrom: ModifiersFrom;
  /** Keep a shared copy of the weights as loaded (SharedState.anchor) for hooks that read the pretrained weights. */
  anchor?: boolean;
}

/** A started pool: shared state, partition and workers, ready for the coordinator. */
export interface Launched {
  model: EncoderClassifier;
  state: SharedState;
  segments: Segment[][];
  decays: boolean[];
  workers: Worker[];
  adam: AdamWSettings;
  hooksFrom: HooksFrom;
}

/** The coordinator, on the main thread. */
export class ParallelPool implements TrainingPool {
  private pending = new Map<Worker, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly local: ShardExecutor;
  private readonly model: EncoderClassifier;
  private readonly state: SharedState;
  private readonly workers: Worker[];
  private readonly adam: AdamWSettings;
  private step = 0;
  private squares: Float32Array[] | undefined;

  constructor(l: Launched) {
    ({ model: this.model, state: this.state, workers: this.workers, adam: this.adam } = l);
    this.local = new ShardExecutor(l.model, 0, l.state, l.segments[0], l.decays, l.hooksFrom);
    for (const w of this.workers) {
      w.on('message', (msg: { ok?: Reply; error?: string }) => {
        const p = this.pending.get(w);
        this.pending.delete(w);
        if (msg.error !== undefined) p?.reject(new Error(`worker thread: ${msg.error}`));
        else p?.resolve(msg.ok!);
      });
      w.on('error', (e) => {
        this.pending.get(w)?.reject(e);
        this.pending.delete(w);
      });
    }
  }

  /** Moves the model's weights into shared memory and starts threads - 1 workers. */
  static async launch(model: EncoderClassifier, o: PoolOptions): Promise<Launched> {
    const threads = Math.max(1, o.threads);
    const state = allocateSharedState(model, threads, o.arenaPages, o.anchor);
    // Frozen tensors are neither reduced nor updated: they take no thread's share (and leave the split as without them).
    const segments = partition(
      state.values.map((v, i) => (trains(model.specs[i]) ? v.length : 0)),
      threads,
    );
    const decays = model.specs.map((s) => s.decay);
    const workers = Array.from({ length: threads - 1 }, (_, k) => {
      const init: WorkerInit = {
        config: model.config,
        numLabels: model.numLabels,
        backend: o.backend,
        kernel: o.kernel,
        shard: k + 1,
        state,
        segments: segments[k + 1],
        decays,
        modifiers: modifierData(model.modifiers),
      };
      return new Worker(o.worker, { workerData: init });
    });
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once('message', (m: { ready?: boolean; error?: string }) =>
              m.ready ? resolve() : reject(new Error(`worker thread failed to start: ${m.error}`)),
            );
            w.once('error', reject);
          }),
      ),
    );
    return { model, state, segments, decays, workers, adam: o.adam, hooksFrom: o.hooksFrom };
  }

  static async start(model: EncoderClassifier, o: PoolOptions): Promise<ParallelPool> {
    return new ParallelPool(await ParallelPool.launch(model, o));
  }

  get threads() {
    return this.workers.length + 1;
  }

  /** The reduced (batch-mean) gradient of the last `gradients` call, one array per parameter. */
  get grads(): Float32Array[] {
    return this.state.grads[0];
  }

  /** Gradient buffer of one shard (per-example Fisher reads each shard's separately). */
  shardGrads(k: number): Float32Array[] {
    return this.state.grads[k];
  }

  get moments() {
    return { m: this.state.m, v: this.state.v, step: this.step };
  }

  /** Restores Adam's moments and step count (resume from a checkpoint). */
  restoreMoments(m: Float32Array[], v: Float32Array[], step: number) {
    m.forEach((x, i) => this.state.m[i].set(x));
    v.forEach((x, i) => this.state.v[i].set(x));
    this.step = step;
  }

  private async round(requests: (Request | undefined)[]): Promise<(Reply | undefined)[]> {
    const remote = this.workers.map((w, k) => {
      const req = requests[k + 1];
      if (!req) return Promise.resolve(undefined);
      return new Promise<Reply>((resolve, reject) => {
        this.pending.set(w, { resolve, reject });
        w.postMessage(req);
      });
    });
    // The main thread works on shard 0 while the workers run; their replies are read afterwards.
    let local: Reply | undefined;
    let failure: unknown;
    try {
      local = requests[0] && this.local.handle(requests[0]);
    } catch (e) {
      failure = e;
    }
    const replies = await Promise.all(remote);
    if (failure) throw failure;
    return [local, ...replies];
  }

  private split(b: Batch): { batches: Batch[]; weights: number[] } {
    const shards = Math.min(this.threads, b.batch);
    const batches: Batch[] = [];
    for (let k = 0; k < shards; k++)
      batches.push(sliceBatch(b, Math.floor((k * b.batch) / shards), Math.floor(((k + 1) * b.batch) / shards)));
    return { batches, weights: batches.map((x) => x.batch / b.batch) };
  }

  /**
   * Forward and backward over a batch; leaves the batch-mean gradient in `grads`. Returns the loss and gradient norm.
   * `stepSeed` seeds the modules' own draws of the step (the same in every shard) and the hooks' consistency noise.
   */
  async gradients(
    b: Batch,
    dropoutSeed: number | null,
    stepSeed: number | null = null,
  ): Promise<{ loss: number; norm: number }> {
    const { batches, weights } = this.split(b);
    const losses = await this.round(batches.map((batch) => ({ kind: 'grad', batch, dropoutSeed, stepSeed })));
    const sums = await this.round(Array.from({ length: this.threads }, () => ({ kind: 'reduce', weights })));
    const loss = weights.reduce((a, w, k) => a + w * losses[k]!.loss!, 0);
    return { loss, norm: Math.sqrt(sums.reduce((a, r) => a + r!.sumsq!, 0)) };
  }

  /**
   * Each batch is split across the shards as `gradients` splits it; a shard sums its pieces, each scaled by its share
   * of the shard's rows over all the batches, and the reduce weighs the shards by their rows: every row counts alike.
   */
  async accumulate(micro: readonly MicroBatch[]): Promise<{ loss: number; norm: number }> {
    if (micro.length === 1) return this.gradients(micro[0].batch, micro[0].dropoutSeed, micro[0].stepSeed);
    const splits = micro.map((m) => this.split(m.batch).batches);
    const rows = new Array<number>(this.threads).fill(0);
    for (const batches of splits) batches.forEach((b, k) => (rows[k] += b.batch));
    const losses = new Array<number>(this.threads).fill(0);
    for (const [j, batches] of splits.entries()) {
      const { dropoutSeed, stepSeed } = micro[j];
      const replies = await this.round(
        batches.map((batch, k) => ({
          kind: 'grad',
          batch,
          dropoutSeed,
          stepSeed,
          share: batch.batch / rows[k],
          accumulate: splits.slice(0, j).some((earlier) => earlier.length > k),
        })),
      );
      replies.forEach((r, k) => r && (losses[k] += r.loss!));
    }
    const total = rows.reduce((a, b) => a + b, 0);
    const weights = rows.filter((n) => n > 0).map((n) => n / total);
    const sums = await this.round(Array.from({ length: this.threads }, () => ({ kind: 'reduce', weights })));
    const loss = weights.reduce((a, w, k) => a + w * losses[k], 0);
    return { loss, norm: Math.sqrt(sums.reduce((a, r) => a + r!.sumsq!, 0)) };
  }

  /** Gradients of several batches at once, one per shard, left unreduced in shardGrads(k). Returns the losses. */
  async gradientsEach(batches: Batch[], dropoutSeed: number | null): Promise<number[]> {
    if (batches.length > this.threads) throw new Error('more batches than threads');
    const replies = await this.round(batches.map((batch) => ({ kind: 'grad', batch, dropoutSeed })));
    return replies.slice(0, batches.length).map((r) => r!.loss!);
  }

  addSquares(k: number, scoped: readonly boolean[], clip: number, count: number) {
    const grads = this.state.grads[k];
    const sums = (this.squares ??= grads.map((g, i) => new Float32Array(scoped[i] ? g.length : 0)));
    grads.forEach((g, i) => {
      if (!scoped[i]) return;
      const f = sums[i];
      let scale = 1;
      if (clip > 0) {
        let sq = 0;
        for (let j = 0; j < g.length; j++) sq += g[j] * g[j];
        const coef = clip / (Math.sqrt(sq) + 1e-6);
        if (coef < 1) scale = coef;
      }
      for (let j = 0; j < g.length; j++) {
        const v = g[j] * scale;
        f[j] += (v * v) / count;
      }
    });
  }

  async takeSquares(): Promise<Float32Array[]> {
    const out = this.squares ?? this.state.grads[0].map(() => new Float32Array(0));
    this.squares = undefined;
    return out;
  }

  /** The weights and moments live in shared host memory already. */
  async syncToHost() {}

  /** Every thread rebuilds its hooks from `prepared` (plain data) and copies their fixed bitsets into shared memory. */
  async setHooks(prepared: unknown) {
    await this.round(Array.from({ length: this.threads }, () => ({ kind: 'hooks', prepared })));
  }

  /** Every replica re-reads the shared weights (after they were written outside an update, e.g. the best epoch's restored). */
  async reload() {
    await this.round(Array.from({ length: this.threads }, () => ({ kind: 'reload' })));
  }

  /**
   * One optimizer step on the reduced gradient: clip by `coef`, the hooks' transform, AdamW. The observer
   * reads or writes the shared per-tensor bitsets before the round and after it (masks replayed, counted, recorded).
   */
  async update(lr: number, coef: number, observer?: UpdateObserver) {
    this.step++;
    const adam = adamwStep(this.adam, this.step, lr);
    const bits = this.state.bits;
    observer?.before?.(this.step, bits);
    const replies = await this.round(
      Array.from({ length: this.threads }, () => ({ kind: 'update', step: this.step, coef, adam })),
    );
    const kept = this.state.values.map((_, t) => replies.reduce((sum, r) => sum + (r?.kept?.[t] ?? 0), 0));
    observer?.after?.(
      this.step,
      bits,
      this.state.values.map((v) => v.length),
      kept,
    );
  }

  /** Runs predict or features over a batch, its rows split across threads; outputs concatenated in row order. */
  async infer(kind: 'predict' | 'features', b: Batch): Promise<Float32Array> {
    const { batches } = this.split(b);
    return concat(
      (await this.round(batches.map((batch) => ({ kind, batch })))).slice(0, batches.length).map((r) => r!.out!),
    );
  }

  async close() {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.model.markDirty();
  }
}
