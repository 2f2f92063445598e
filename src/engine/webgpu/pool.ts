import * as tf from '@tensorflow/tfjs-core';
import { bitsetBytes } from '../bitset.js';
import type { Batch, EncoderClassifier } from '../model.js';
import { internalShape, sizeOf, trains } from '../modules/param.js';
import { adamwStep, type AdamWSettings } from '../optimizer.js';
import type { DeviceOp, HooksFrom, UpdateHooks, UpdateObserver } from '../parallel/hooks.js';
import { Rng, seedState, streamSeed } from '../rng.js';
import type { MicroBatch, TrainingPool } from '../training-pool.js';
import { checkDeviceErrors, DeviceError, gpuDevice } from './device.js';
import { DRAW_WGSL, UPDATE, UPDATE_FIELDS, UPDATE_UINTS, UPDATE_WGSL, updateGroups } from './optimizer.js';
import { bufferOf, flushTfjs } from './tfjs.js';

/** Uniform blocks are bound at multiples of this (WebGPU's minUniformBufferOffsetAlignment at its largest). */
const UNIFORM_STRIDE = 256;

export interface DevicePoolOptions {
  adam: AdamWSettings;
  hooksFrom: HooksFrom;
  /** Keep a copy of the weights as loaded on the device (hooks that read the pretrained weights). */
  anchor?: boolean;
}

/** A trainable tensor's optimizer state on the GPU. */
interface TensorState {
  m: GPUBuffer;
  v: GPUBuffer;
  /** Keep bits, 32 to a word, bit j of the tensor at word j >> 5 (the CPU's byte layout read as little-endian words). */
  bits: GPUBuffer;
  anchor?: GPUBuffer;
  decayBits?: GPUBuffer;
}

/**
 * Training on one GPU through tfjs's webgpu backend: the same model and modules as on the CPU, with the weights,
 * gradients, Adam's moments and the masks on the device for the whole run. The forward and backward passes are
 * tfjs ops (plus a deterministic embedding-gradient kernel); the update is ours (optimizer.ts): F's draws, the
 * strategy's transform, AdamW and the decay, fused per tensor. Per step only the loss, the gradient norm and the
 * kept counts come back; weights and moments are copied to the host for checkpoints and the saved model.
 */
export class DevicePool implements TrainingPool {
  readonly threads = 1;
  private readonly device: GPUDevice;
  private readonly weights: tf.Tensor[];
  private readonly state: (TensorState | undefined)[];
  private grads: (tf.Tensor | undefined)[] = [];
  private squares: (tf.Tensor | undefined)[] | undefined;
  private hooks: UpdateHooks = { kind: 'plain' };
  private step = 0;
  private readonly hostM: Float32Array[];
  private readonly hostV: Float32Array[];
  /** Host copies of the bitsets, for a strategy that replays or records masks. */
  private hostBits: Uint8Array[] | undefined;
  private readonly kept: GPUBuffer;
  private readonly dummy: GPUBuffer;
  private readonly pipelines: { draw: GPUComputePipeline; update: GPUComputePipeline };

  private constructor(
    private readonly model: EncoderClassifier,
    private readonly o: DevicePoolOptions,
  ) {
    this.device = gpuDevice().device;
    if (tf.getBackend() !== 'webgpu') throw new Error('the device pool needs the webgpu backend active');
    const specs = model.specs;
    this.weights = specs.map((s, i) => tf.keep(tf.tensor(model.values[i], internalShape(s))));
    model.placeOnDevice(this.weights);
    // The uploads tfjs records, submitted before the anchor copies read them.
    const uploaded = this.weights.map(bufferOf);
    flushTfjs();
    const encoder = this.device.createCommandEncoder();
    this.state = specs.map((s, i) => {
      if (!trains(s)) return undefined;
      const n = sizeOf(s);
      const st: TensorState = {
        m: this.buffer(n * 4),
        v: this.buffer(n * 4),
        bits: this.buffer(Math.ceil(n / 32) * 4),
      };
      if (o.anchor) {
        st.anchor = this.buffer(n * 4);
        encoder.copyBufferToBuffer(uploaded[i], 0, st.anchor, 0, n * 4);
      }
      return st;
    });
    this.device.queue.submit([encoder.finish()]);
    this.hostM = specs.map(() => new Float32Array(0));
    this.hostV = specs.map(() => new Float32Array(0));
    this.kept = this.buffer(Math.max(1, specs.length) * 4);
    this.dummy = this.buffer(16);
    const pipeline = (code: string) =>
      this.device.createComputePipeline({
        layout: 'auto',
        compute: { module: this.device.createShaderModule({ code }), entryPoint: 'main' },
      });
    this.pipelines = { draw: pipeline(DRAW_WGSL), update: pipeline(UPDATE_WGSL) };
  }

  static async start(model: EncoderClassifier, o: DevicePoolOptions): Promise<DevicePool> {
    const pool = new DevicePool(model, o);
    await pool.device.queue.onSubmittedWorkDone();
    checkDeviceErrors('setting up the model on the GPU');
    return pool;
  }

  private buffer(
    bytes: number,
    usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  ): GPUBuffer {
    // Zero-filled on creation (WebGPU's rule), which is where Adam's moments start.
    return this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage });
  }

  get moments() {
    return { m: this.hostM, v: this.hostV, step: this.step };
  }

  async gradients(b: Batch, dropoutSeed: number | null, stepSeed: number | null = null) {
    return this.lossAndNorm(this.backward(b, dropoutSeed, stepSeed));
  }

  /** Each batch's gradient and loss scaled by its share of all the rows and added on the device. */
  async accumulate(micro: readonly MicroBatch[]) {
    if (micro.length === 1) return this.gradients(micro[0].batch, micro[0].dropoutSeed, micro[0].stepSeed);
    const rows = micro.reduce((a, m) => a + m.batch.batch, 0);
    let loss: tf.Scalar | undefined;
    for (const [j, m] of micro.entries()) {
      const share = m.batch.batch / rows;
      const part = this.backward(m.batch, m.dropoutSeed, m.stepSeed, { share, add: j > 0 });
      const sum = tf.tidy(() => (loss ? tf.add(loss, tf.mul(part, share)) : tf.mul(part, share)) as tf.Scalar);
      tf.dispose([part, loss]);
      loss = sum;
    }
    return this.lossAndNorm(loss!);
  }

  /** The loss and the global gradient norm, read back together; the loss tensor is disposed. */
  private async lossAndNorm(loss: tf.Scalar) {
    const sums = tf.tidy(() => {
      // Added one by one, in tensor order: addN binds every input at once, past the device's limit.
      const squares = this.grads.filter((g): g is tf.Tensor => !!g).map((g) => tf.sum(tf.square(g)));
      return tf.stack([loss, squares.reduce((a, b) => tf.add(a, b), tf.scalar(0))]);
    });
    loss.dispose();
    const [l, sumsq] = await sums.data();
    sums.dispose();
    checkDeviceErrors('a training step');
    return { loss: l, norm: Math.sqrt(sumsq) };
  }

  /**
   * The pass itself: the gradients replace the last ones, or with `add` are added to them, scaled by `share`;
   * the loss stays on the device.
   */
  private backward(
    b: Batch,
    dropoutSeed: number | null,
    stepSeed: number | null,
    { share, add } = { share: 1, add: false },
  ): tf.Scalar {
    if (!add) {
      tf.dispose(this.grads);
      this.grads = [];
    }
    // One shard: the dropout stream of the CPU path's shard 0, so a one-thread CPU run draws the same masks.
    const rng = dropoutSeed === null ? null : new Rng(streamSeed(dropoutSeed, 0));
    // The consistency noise of the CPU path's shard 0, first pass.
    const term = stepSeed === null ? undefined : this.hooks.consistency;
    const consistency = term && { term, noise: new Rng(streamSeed(stepSeed!, term.stream, 0, 0)) };
    return this.model.stepOnDevice(
      b,
      rng,
      (p, computed) => {
        const g = share === 1 ? computed : tf.mul(computed, share);
        if (g !== computed) computed.dispose();
        const before = this.grads[p.index];
        this.grads[p.index] = tf.keep(before ? tf.add(before, g) : g);
        if (before) tf.dispose([before, g]);
      },
      { seed: stepSeed, consistency },
    );
  }

  async gradientsEach(batches: Batch[], dropoutSeed: number | null): Promise<number[]> {
    if (batches.length > 1) throw new Error('more batches than threads');
    if (!batches.length) return [];
    const loss = this.backward(batches[0], dropoutSeed, null);
    const [l] = await loss.data();
    loss.dispose();
    return [l];
  }

  addSquares(k: number, scoped: readonly boolean[], clip: number, count: number) {
    if (k !== 0) throw new Error('a GPU has one shard');
    const sums = (this.squares ??= []);
    this.grads.forEach((g, i) => {
      if (!g || !scoped[i]) return;
      const next = tf.tidy(() => {
        let x = g;
        if (clip > 0) {
          const coef = tf.div(clip, tf.add(tf.sqrt(tf.sum(tf.square(g))), 1e-6));
          x = tf.mul(g, tf.minimum(coef, 1));
        }
        const add = tf.div(tf.square(x), count);
        return sums[i] ? tf.add(sums[i]!, add) : add;
      });
      sums[i]?.dispose();
      sums[i] = tf.keep(next);
    });
  }

  async takeSquares(): Promise<Float32Array[]> {
    const sums = this.squares ?? [];
    this.squares = undefined;
    const out = await Promise.all(
      this.model.specs.map(async (_, i) => {
        const t = sums[i];
        if (!t) return new Float32Array(0);
        const values = (await t.data()) as Float32Array;
        t.dispose();
        return values;
      }),
    );
    checkDeviceErrors('the fisher pass');
    return out;
  }

  async setHooks(prepared: unknown) {
    this.hooks = this.o.hooksFrom(prepared);
    const h = this.hooks;
    if (h.transform && !h.transform.device)
      throw new DeviceError(
        `${h.kind}'s gradient transform has no GPU form yet`,
        'Set runtime.backend: auto (or wasm) for this strategy.',
      );
    const q = this.device.queue;
    this.state.forEach((st, i) => {
      if (!st) return;
      const fixed = h.fixedBits?.[i];
      if (fixed) write(q, st.bits, 0, padded(fixed));
      const decay = this.model.specs[i].decay ? h.decayMask?.(i) : undefined;
      st.decayBits?.destroy();
      st.decayBits = decay && this.buffer(Math.ceil(decay.length / 4) * 4);
      if (decay) write(q, st.decayBits!, 0, padded(decay));
    });
  }

  async update(lr: number, coef: number, observer?: UpdateObserver) {
    this.step++;
    const step = this.step;
    const runStep = adamwStep(this.o.adam, step, lr);
    const specs = this.model.specs;
    const h = this.hooks;
    const hostBits = (this.hostBits ??= specs.map((s) => new Uint8Array(bitsetBytes(sizeOf(s)))));
    observer?.before?.(step, hostBits);
    const q = this.device.queue;
    const limit = this.device.limits.maxComputeWorkgroupsPerDimension;
    const jobs: { i: number; n: number; ops: DeviceOp[]; uniforms: ArrayBuffer }[] = [];
    specs.forEach((spec, i) => {
      const st = this.state[i];
      const g = this.grads[i];
      if (!st || !g || (h.trains && !h.trains[i])) return;
      const n = sizeOf(spec);
      const ops = h.transform?.device?.(i, n, step) ?? [];
      const mask = ops.find((op) => op.kind === 'mask');
      const pull = ops.find((op) => op.kind === 'pull');
      const drawn = ops.some((op) => op.kind === 'draw');
      // Bits neither drawn here nor fixed at setHooks are the host's this step (F's replayed masks).
      if (mask && !drawn && !h.fixedBits?.[i]) write(q, st.bits, 0, padded(hostBits[i]));
      const decayMask = spec.decay ? st.decayBits : undefined;
      const adam = h.ownStep?.(i, step, runStep) ?? runStep;
      const change = h.stepRule?.(i, step, adam);
      if (change && !st.anchor)
        throw new Error(`tensor ${i}'s update pulls towards the pretrained anchor, but none is kept`);
      const u: Record<(typeof UPDATE_FIELDS)[number], number> = {
        n,
        flags:
          (pull ? UPDATE.pullGradient : 0) |
          (mask ? UPDATE.mask : 0) |
          (change && change.pull !== 0 ? UPDATE.pullWeights : 0) |
          (decayMask ? UPDATE.maskedDecay : 0),
        slot: i,
        coef: Math.min(coef, 1),
        scale: mask?.kind === 'mask' ? mask.scale : 1,
        lambda: pull?.kind === 'pull' ? pull.lambda : 0,
        stepSize: change ? adam.stepSize * change.scale : adam.stepSize,
        b1: adam.b1,
        b2: adam.b2,
        eps: adam.eps,
        decay: spec.decay && !decayMask && !change ? adam.decay : 0,
        afterPull: change?.pull ?? 0,
        afterDecay: change && spec.decay && !decayMask ? adam.decay : 0,
        maskDecay: decayMask ? adam.decay : 0,
      };
      const uniforms = new ArrayBuffer(UNIFORM_STRIDE);
      const view = new DataView(uniforms);
      UPDATE_FIELDS.forEach((f, k) =>
        UPDATE_UINTS.has(f) ? view.setUint32(4 * k, u[f], true) : view.setFloat32(4 * k, u[f], true),
      );
      jobs.push({ i, n, ops, uniforms });
    });
    if (!jobs.length) return;
    // Every job's uniforms and F's stream states, each at its own offset of one buffer, written before the submit.
    const draws = jobs.flatMap((j) => j.ops.filter(isDraw).map((op) => ({ job: j, op })));
    const uniform = this.buffer(
      UNIFORM_STRIDE * (jobs.length + draws.length),
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
    jobs.forEach((j, k) => q.writeBuffer(uniform, k * UNIFORM_STRIDE, j.uniforms));
    // Each draw's states start at a multiple of 16 chunks (256 bytes, the storage binding alignment).
    const aligned = (chunks: number) => Math.ceil(chunks / 16) * 16;
    const totalChunks = draws.reduce((a, d) => a + aligned(d.op.seeds.length), 0);
    const seeds = totalChunks ? this.buffer(totalChunks * 16) : undefined;
    const states = new Uint32Array(totalChunks * 4);
    let chunkAt = 0;
    flushTfjs();
    const encoder = this.device.createCommandEncoder();
    encoder.clearBuffer(this.kept);
    const pass = encoder.beginComputePass();
    draws.forEach(({ job, op }, k) => {
      op.seeds.forEach((seed, c) => seedState(seed, states, 4 * (chunkAt + c)));
      const header = new Uint32Array([op.seeds.length, op.chunk, job.n, op.threshold]);
      q.writeBuffer(uniform, (jobs.length + k) * UNIFORM_STRIDE, header);
      pass.setPipeline(this.pipelines.draw);
      pass.setBindGroup(
        0,
        this.device.createBindGroup({
          layout: this.pipelines.draw.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: uniform, offset: (jobs.length + k) * UNIFORM_STRIDE, size: 16 } },
            { binding: 1, resource: { buffer: seeds!, offset: chunkAt * 16, size: op.seeds.length * 16 } },
            { binding: 2, resource: { buffer: this.state[job.i]!.bits } },
          ],
        }),
      );
      pass.dispatchWorkgroups(Math.ceil(op.seeds.length / 64));
      chunkAt += aligned(op.seeds.length);
    });
    if (seeds) q.writeBuffer(seeds, 0, states);
    jobs.forEach((j, k) => {
      const st = this.state[j.i]!;
      pass.setPipeline(this.pipelines.update);
      pass.setBindGroup(
        0,
        this.device.createBindGroup({
          layout: this.pipelines.update.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: uniform, offset: k * UNIFORM_STRIDE, size: 4 * UPDATE_FIELDS.length } },
            { binding: 1, resource: { buffer: bufferOf(this.weights[j.i]) } },
            { binding: 2, resource: { buffer: bufferOf(this.grads[j.i]!) } },
            { binding: 3, resource: { buffer: st.m } },
            { binding: 4, resource: { buffer: st.v } },
            { binding: 5, resource: { buffer: st.bits } },
            { binding: 6, resource: { buffer: st.anchor ?? this.dummy } },
            { binding: 7, resource: { buffer: st.decayBits ?? this.dummy } },
            { binding: 8, resource: { buffer: this.kept } },
          ],
        }),
      );
      const [x, y] = updateGroups(j.n, limit);
      pass.dispatchWorkgroups(x, y);
    });
    pass.end();
    const counts = new Uint32Array(specs.length);
    const reads = [this.copyOut(encoder, this.kept, new Uint8Array(counts.buffer))];
    if (observer?.readsBits)
      for (const { i } of jobs) reads.push(this.copyOut(encoder, this.state[i]!.bits, hostBits[i]));
    q.submit([encoder.finish()]);
    uniform.destroy();
    seeds?.destroy();
    for (const read of reads) await read();
    checkDeviceErrors(`the update at step ${step}`);
    observer?.after?.(step, hostBits, specs.map(sizeOf), [...counts]);
  }

  async reload() {
    flushTfjs();
    this.model.specs.forEach((_, i) => write(this.device.queue, bufferOf(this.weights[i]), 0, this.model.values[i]));
  }

  restoreMoments(m: Float32Array[], v: Float32Array[], step: number) {
    this.state.forEach((st, i) => {
      if (!st) return;
      write(this.device.queue, st.m, 0, m[i]);
      write(this.device.queue, st.v, 0, v[i]);
    });
    this.step = step;
  }

  /** Copies the trained tensors' weights and moments back (a frozen tensor's host values never went stale). */
  async syncToHost() {
    flushTfjs();
    const encoder = this.device.createCommandEncoder();
    const reads: (() => Promise<void>)[] = [];
    this.model.specs.forEach((s, i) => {
      const st = this.state[i];
      if (!st) return;
      if (this.hostM[i].length !== sizeOf(s)) {
        this.hostM[i] = new Float32Array(sizeOf(s));
        this.hostV[i] = new Float32Array(sizeOf(s));
      }
      reads.push(
        this.copyOut(encoder, bufferOf(this.weights[i]), this.model.values[i]),
        this.copyOut(encoder, st.m, this.hostM[i]),
        this.copyOut(encoder, st.v, this.hostV[i]),
      );
    });
    this.device.queue.submit([encoder.finish()]);
    for (const read of reads) await read();
    checkDeviceErrors('copying the weights to the host');
  }

  /**
   * Records a copy of `from`'s first bytes into a staging buffer on `encoder`; the returned function, called once the
   * encoder is submitted, maps it and fills `into` (as many bytes as it holds).
   */
  private copyOut(encoder: GPUCommandEncoder, from: GPUBuffer, into: ArrayBufferView): () => Promise<void> {
    const bytes = Math.ceil(into.byteLength / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(16, bytes),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.copyBufferToBuffer(from, 0, staging, 0, bytes);
    return async () => {
      await staging.mapAsync(GPUMapMode.READ);
      new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(
        new Uint8Array(staging.getMappedRange(), 0, into.byteLength),
      );
      staging.destroy();
    };
  }

  async infer(kind: 'predict' | 'features', b: Batch): Promise<Float32Array> {
    const out = await this.model.inferOnDevice(b, kind);
    checkDeviceErrors('evaluation');
    return out;
  }

  async close() {
    tf.dispose([this.grads, this.squares]);
    this.grads = [];
    this.model.placeOnDevice(undefined);
    tf.dispose(this.weights);
    for (const st of this.state) if (st) for (const b of [st.m, st.v, st.bits, st.anchor, st.decayBits]) b?.destroy();
    this.kept.destroy();
    this.dummy.destroy();
  }
}

const isDraw = (op: DeviceOp): op is Extract<DeviceOp, { kind: 'draw' }> => op.kind === 'draw';

/** queue.writeBuffer for any typed array (the model's values may live in shared memory). */
const write = (q: GPUQueue, to: GPUBuffer, offset: number, data: ArrayBufferView) =>
  q.writeBuffer(to, offset, data as ArrayBufferView<ArrayBuffer>);

/** A bitset's bytes padded to whole 32-bit words (writeBuffer copies multiples of 4 bytes). */
function padded(bits: Uint8Array): Uint8Array {
  if (bits.length % 4 === 0) return bits;
  const out = new Uint8Array(Math.ceil(bits.length / 4) * 4);
  out.set(bits);
  return out;
}
