import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../engine/backend.js';
import * as tf from '@tensorflow/tfjs-core';
import { sliceBatch } from '../engine/batch.js';
import { rowsPerPass } from '../engine/memory.js';
import type { ModelConfig } from '../engine/config.js';
import type { Batch, EncoderClassifier } from '../engine/model.js';
import { adamwStep, decayWhere, jsPasses, type AdamWSettings, type AdamWStep, type OptimizerPasses } from '../engine/optimizer.js';
import { arenaLengths, OptimizerKernels, planArenas, SharedArena } from '../engine/optimizer-wasm.js';
import { sizeOf } from '../engine/params.js';
import { Rng, streamSeed } from '../engine/rng.js';
import { bitsetBytes, popcount } from '../strategies/bitset.js';
import { decayBits, F_CHUNK, maskRange, type MaskSpec, type Strategy } from '../strategies/strategy.js';

/**
 * Data parallelism over worker threads. tfjs's wasm backend runs one thread in Node, so each worker holds
 * its own backend and a replica of the model whose weights, gradients and Adam moments live in shared
 * memory. A step is three rounds, each run by every thread at once (the main thread is shard 0):
 * 1. grad: forward and backward over its rows of the batch, into its own gradient buffer;
 * 2. reduce: over its slice of the parameters, the batch-mean gradient into shard 0's buffer, plus the
 *    slice's sum of squares (for global-norm clipping);
 * 3. update: over the same slice, clip, the strategy's mask, then AdamW; the replicas re-read the weights.
 * Results depend on the thread count only through the dropout streams (one per shard) and the order of the
 * gradient sum; masks, data order and everything else are the same for any count.
 */

export interface Segment {
  index: number;
  lo: number;
  hi: number;
}

interface SharedState {
  values: Float32Array[];
  /** One gradient buffer per shard; shard 0's holds the reduced gradient after a reduce round. */
  grads: Float32Array[][];
  m: Float32Array[];
  v: Float32Array[];
  /** Child-Tuning-F's keep bits of the current step, one bitset per tensor (the engine's layout): drawn or replayed, applied, counted, recorded. */
  fbits: Uint8Array[];
  /**
   * Shared wasm memories (at most 4 GiB each), each holding the values, shard 0's gradients and the moments
   * of some tensors, with each thread's draw scratch, so their update runs in wasm, and when `shards` every
   * shard's gradients too, so their reduce does. A tensor in none of them (too large alone) runs the
   * JavaScript passes.
   */
  arenas: { memory: WebAssembly.Memory; draws: Float32Array[]; shards: boolean; tensors: number[] }[];
}

type Request =
  | { kind: 'grad'; batch: Batch; dropoutSeed: number | null }
  | { kind: 'reduce'; weights: number[] }
  | { kind: 'update'; step: number; coef: number; adam: AdamWStep }
  | { kind: 'strategy'; spec: MaskSpec }
  | { kind: 'reload' }
  | { kind: 'predict'; batch: Batch }
  | { kind: 'features'; batch: Batch };

interface Reply {
  loss?: number;
  sumsq?: number;
  out?: Float32Array;
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const shared = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));

/**
 * Splits all parameter elements into `parts` runs of nearly equal size, in tensor order. Tensors are only
 * cut at multiples of F_CHUNK, so Child-Tuning-F's chunked streams come out the same for any thread count.
 */
export function partition(sizes: readonly number[], parts: number): Segment[][] {
  const starts: number[] = [];
  let total = 0;
  for (const size of sizes) {
    starts.push(total);
    total += size;
  }
  const cuts = [0];
  for (let p = 1; p < parts; p++) {
    const at = Math.round((p * total) / parts);
    let i = 0;
    while (i + 1 < sizes.length && starts[i + 1] <= at) i++;
    const snapped = Math.min(sizes[i], Math.round((at - starts[i]) / F_CHUNK) * F_CHUNK);
    cuts.push(Math.max(cuts[p - 1], starts[i] + snapped));
  }
  cuts.push(total);
  return Array.from({ length: parts }, (_, p) => {
    const out: Segment[] = [];
    sizes.forEach((size, index) => {
      const lo = Math.max(cuts[p], starts[index]) - starts[index];
      const hi = Math.min(cuts[p + 1], starts[index] + size) - starts[index];
      if (hi > lo) out.push({ index, lo, hi });
    });
    return out;
  });
}

/**
 * The batch-mean gradient over [lo, hi) of one tensor into shard 0's buffer, as the weights say; returns
 * `sumsq` plus its squares (for global-norm clipping).
 */
export function reduceSegment(grads: Float32Array[][], { index, lo, hi }: Segment, w: readonly number[], sumsq: number, passes: OptimizerPasses = jsPasses): number {
  const g = grads[0][index];
  if (w.length === 1 && w[0] === 1) return passes.sumsq(g, lo, hi, sumsq);
  // The common case in one pass: weighted sum, stored as float32, squared.
  if (w.length === 2) return passes.reduce2(g, grads[1][index], lo, hi, w[0], w[1], sumsq);
  passes.scale(g, lo, hi, w[0]);
  for (let k = 1; k < w.length; k++) passes.axpy(g, grads[k][index], lo, hi, w[k]);
  return passes.sumsq(g, lo, hi, sumsq);
}

/**
 * One optimizer step over grad[lo, hi) of one tensor (the reduced gradient): clip by `coef`, the strategy's
 * mask (F's keep bits in s.fbits when given), then AdamW, with weight decay only where the parameter decays.
 * Returns how many elements the mask kept.
 */
export function updateSegment(s: Pick<SharedState, 'values' | 'm' | 'v'> & { grads: Float32Array[][]; fbits?: Uint8Array[] }, { index, lo, hi }: Segment, spec: MaskSpec, step: number, coef: number, adam: AdamWStep, decays: boolean, passes: OptimizerPasses = jsPasses): number {
  const [p, g, m, v] = [s.values[index], s.grads[0][index], s.m[index], s.v[index]];
  if (coef < 1) passes.scale(g, lo, hi, coef);
  const kept = maskRange(spec, index, g, lo, hi, step, passes, s.fbits?.[index]);
  // D's masked decay reads the stepped weight, so it follows an undecayed step.
  const bits = decays ? decayBits(spec, index) : undefined;
  passes.adamw(p, g, m, v, lo, hi, { ...adam, decay: decays && !bits ? adam.decay : 0 });
  if (bits) decayWhere(p, lo, hi, bits, adam.decay);
  return kept;
}

/** What one thread does with each request; the same code runs on the main thread and in the workers. */
export class ShardExecutor {
  private spec: MaskSpec = { kind: 'vanilla' };
  /** Per tensor: the wasm passes of its arena, JavaScript where it has none. */
  private readonly updatePasses: OptimizerPasses[];
  private readonly reducePasses: OptimizerPasses[];

  constructor(private readonly model: EncoderClassifier, private readonly shard: number, private readonly state: SharedState, private readonly segments: Segment[], private readonly decays: boolean[]) {
    this.updatePasses = state.values.map(() => jsPasses);
    this.reducePasses = state.values.map(() => jsPasses);
    for (const arena of state.arenas) {
      const kernels = new OptimizerKernels(arena.memory, arena.draws[shard]);
      for (const t of arena.tensors) {
        this.updatePasses[t] = kernels;
        if (arena.shards) this.reducePasses[t] = kernels;
      }
    }
  }

  handle(req: Request): Reply {
    const s = this.state;
    switch (req.kind) {
      case 'grad': {
        const rng = req.dropoutSeed === null ? null : new Rng(streamSeed(req.dropoutSeed, this.shard));
        // A shard too large for one pass runs in several, each weighted by its share of the rows.
        let loss = 0;
        this.passes(req.batch).forEach((b, k, all) => {
          const pass = { weight: all.length === 1 ? 1 : b.batch / req.batch.batch, accumulate: k > 0 };
          loss += pass.weight * this.model.step(b, s.grads[this.shard], rng, pass).loss;
        });
        return { loss };
      }
      case 'reduce': {
        let sumsq = 0;
        for (const seg of this.segments) sumsq = reduceSegment(s.grads, seg, req.weights, sumsq, this.reducePasses[seg.index]);
        return { sumsq };
      }
      case 'update': {
        for (const seg of this.segments) updateSegment(s, seg, this.spec, req.step, req.coef, req.adam, this.decays[seg.index], this.updatePasses[seg.index]);
        this.model.markDirty();
        return {};
      }
      case 'strategy':
        this.spec = req.spec;
        return {};
      case 'reload':
        this.model.markDirty();
        return {};
      case 'predict':
        return { out: concat(this.passes(req.batch).map((b) => this.model.predict(b).logits)) };
      case 'features':
        return { out: concat(this.passes(req.batch).map((b) => this.model.features(b))) };
    }
  }

  /** The shard's rows in as few passes as the backend's heap allows (one, except on wasm for large models). */
  private passes(b: Batch): Batch[] {
    if (tf.getBackend() !== 'wasm') return [b];
    const rows = rowsPerPass(this.model.config, this.model.numLabels, b.seq);
    const count = Math.ceil(b.batch / rows);
    if (count <= 1) return [b];
    return Array.from({ length: count }, (_, k) => sliceBatch(b, Math.floor((k * b.batch) / count), Math.floor(((k + 1) * b.batch) / count)));
  }
}

export interface WorkerInit {
  config: ModelConfig;
  numLabels: number;
  backend: BackendName;
  shard: number;
  state: SharedState;
  segments: Segment[];
  decays: boolean[];
}

/** Thread count for a recipe's runtime.threads (0 = every core); native backends parallelise on their own. */
export function threadsFor(requested: number, backend: BackendName): number {
  if (backend === 'tensorflow' || backend === 'tensorflow-gpu') return 1;
  return requested > 0 ? requested : os.availableParallelism();
}

/** The coordinator, on the main thread. */
export class DataParallel {
  private pending = new Map<Worker, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly local: ShardExecutor;
  private step = 0;

  private constructor(private readonly model: EncoderClassifier, private readonly state: SharedState, segments: Segment[][], decays: boolean[], private readonly workers: Worker[], private readonly adam: AdamWSettings) {
    this.local = new ShardExecutor(model, 0, state, segments[0], decays);
    for (const w of workers) {
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
  static async start(model: EncoderClassifier, o: { threads: number; backend: BackendName; adam: AdamWSettings; /** Pages per arena (64 KiB each; default 4 GiB), smaller in tests. */ arenaPages?: number }): Promise<DataParallel> {
    const threads = Math.max(1, o.threads);
    const sizes = model.specs.map(sizeOf);
    const draws = OptimizerKernels.drawsFor(F_CHUNK);
    // Tensors go in 4 GiB wasm arenas, with every shard's gradients where they fit; BERT-large needs two.
    const scratch = new Array(threads).fill(draws);
    const plan = planArenas(sizes, 3 + threads, threads, scratch, o.arenaPages);
    const arenas = plan.groups.map((group) => {
      const copies = group.shards ? 3 + threads : 4;
      // Sized as planArenas sized the group, so it always fits; F's keep bits live beside each gradient.
      const arena = SharedArena.create([...arenaLengths(sizes, group.tensors, copies), ...scratch], o.arenaPages)!;
      return { group, arena, draws: Array.from({ length: threads }, () => arena.floats(draws)) };
    });
    const home = sizes.map((): { arena: SharedArena; shards: boolean } | undefined => undefined);
    for (const { group, arena } of arenas) for (const t of group.tensors) home[t] = { arena, shards: group.shards };
    const alloc = (t: number, everyShard = false) => {
      const h = home[t];
      return h && (!everyShard || h.shards) ? h.arena.floats(sizes[t]) : shared(sizes[t]);
    };
    model.values.forEach((v, i) => {
      const s = alloc(i);
      s.set(v);
      model.values[i] = s;
    });
    model.markDirty();
    const state: SharedState = {
      values: model.values,
      grads: Array.from({ length: threads }, (_, k) => sizes.map((_, t) => alloc(t, k > 0))),
      m: sizes.map((_, t) => alloc(t)),
      v: sizes.map((_, t) => alloc(t)),
      fbits: sizes.map((n, t) => home[t]?.arena.bits(n) ?? new Uint8Array(new SharedArrayBuffer(bitsetBytes(n)))),
      arenas: arenas.map(({ group, arena, draws }) => ({ memory: arena.memory, draws, shards: group.shards, tensors: group.tensors })),
    };
    const segments = partition(sizes, threads);
    const decays = model.specs.map((s) => s.decay);
    const workers = Array.from({ length: threads - 1 }, (_, k) => {
      const init: WorkerInit = { config: model.config, numLabels: model.numLabels, backend: o.backend, shard: k + 1, state, segments: segments[k + 1], decays };
      return new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    });
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
      w.once('message', (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : reject(new Error(`worker thread failed to start: ${m.error}`))));
      w.once('error', reject);
    })));
    return new DataParallel(model, state, segments, decays, workers, o.adam);
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
    for (let k = 0; k < shards; k++) batches.push(sliceBatch(b, Math.floor((k * b.batch) / shards), Math.floor(((k + 1) * b.batch) / shards)));
    return { batches, weights: batches.map((x) => x.batch / b.batch) };
  }

  /** Forward and backward over a batch; leaves the batch-mean gradient in `grads`. Returns the loss and gradient norm. */
  async gradients(b: Batch, dropoutSeed: number | null): Promise<{ loss: number; norm: number }> {
    const { batches, weights } = this.split(b);
    const losses = await this.round(batches.map((batch) => ({ kind: 'grad', batch, dropoutSeed })));
    const sums = await this.round(Array.from({ length: this.threads }, () => ({ kind: 'reduce', weights })));
    const loss = weights.reduce((a, w, k) => a + w * losses[k]!.loss!, 0);
    return { loss, norm: Math.sqrt(sums.reduce((a, r) => a + r!.sumsq!, 0)) };
  }

  /** Gradients of several batches at once, one per shard, left unreduced in shardGrads(k). Returns the losses. */
  async gradientsEach(batches: Batch[], dropoutSeed: number | null): Promise<number[]> {
    if (batches.length > this.threads) throw new Error('more batches than threads');
    const replies = await this.round(batches.map((batch) => ({ kind: 'grad', batch, dropoutSeed })));
    return replies.slice(0, batches.length).map((r) => r!.loss!);
  }

  async setStrategy(strategy: Strategy) {
    await this.round(Array.from({ length: this.threads }, () => ({ kind: 'strategy', spec: strategy.spec })));
  }

  /** Every replica re-reads the shared weights (after they were written outside an update, e.g. the best epoch's restored). */
  async reload() {
    await this.round(Array.from({ length: this.threads }, () => ({ kind: 'reload' })));
  }

  /**
   * One optimizer step on the reduced gradient: clip by `coef`, mask, AdamW. F's masks are replayed into the
   * shared bitsets before the round or drawn there during it; after it, each tensor's kept count is read from its
   * bitset (the mask itself, not a tally) and the masks are recorded when the strategy asks.
   */
  async update(lr: number, coef: number, strategy: Strategy) {
    this.step++;
    const adam = adamwStep(this.adam, this.step, lr);
    const bits = this.state.fbits;
    strategy.masks?.load?.(this.step, bits);
    await this.round(Array.from({ length: this.threads }, () => ({ kind: 'update', step: this.step, coef, adam })));
    const spec = strategy.spec;
    if (spec.kind !== 'child-tuning-f' || spec.p >= 1) return;
    spec.scoped.forEach((inScope, i) => inScope && strategy.record(i, popcount(bits[i], this.state.values[i].length), this.state.values[i].length));
    strategy.masks?.save?.(this.step, bits);
  }

  /** Runs predict or features over a batch, its rows split across threads; outputs concatenated in row order. */
  async infer(kind: 'predict' | 'features', b: Batch): Promise<Float32Array> {
    const { batches } = this.split(b);
    return concat((await this.round(batches.map((batch) => ({ kind, batch })))).slice(0, batches.length).map((r) => r!.out!));
  }

  async close() {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.model.markDirty();
  }
}
