import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.js';
import {
  embeddingNoise,
  squaredDifference,
  squaredDifferenceOnDevice,
  symmetricKl,
  symmetricKlOnDevice,
  type ConsistencyTerm,
} from './consistency.js';
import { dropoutMask, readNow, tidyKeep } from './kernels.js';
import { nativeKernels } from './native.js';
import { promptedMask } from './modules/embeddings.js';
import { assemble } from './modules/families.js';
import { applyModifiers, type ModelModifier } from './modules/modifier.js';
import type { BackwardContext, DerivedParam, ForwardContext, T2 } from './modules/module.js';
import { internalShape, sizeOf, type Param, type ParamSpec } from './modules/param.js';
import { sequenceRows, takeRows } from './modules/rows.js';
import type { Batch, GradientPass, StepResult } from './modules/types.js';
import { Rng, streamSeed } from './rng.js';

export type { Batch, GradientPass, StepResult } from './modules/types.js';

/** A derived parameter's value for one pass, what its backward reads, and its host copy once read. */
interface Derived {
  derived: DerivedParam;
  value: tf.Tensor;
  cache: unknown;
  host?: Float32Array;
}

/** What a training step may add to a plain forward and backward pass. */
export interface StepExtras {
  /** The step's seed for the modules' own draws (ForwardContext.draws); null or absent: they draw nothing. */
  seed?: number | null;
  /**
   * Where the modules' own draws come from instead, by key (ForwardContext.draws): e.g. draws recorded elsewhere,
   * replayed. Absent: the streams below `seed`.
   */
  draws?: (...key: number[]) => Rng | null;
  /** A consistency term over a second pass with noised embeddings, the noise drawn from `noise`. */
  consistency?: { term: ConsistencyTerm; noise: Rng };
}

const NO_DRAWS = () => null;

/** The modules' draws of a step: the caller's, else fresh streams below the step's seed (none without one). */
function drawsOf({ seed, draws }: StepExtras): ForwardContext['draws'] {
  if (draws) return draws;
  return seed === undefined || seed === null ? NO_DRAWS : (...key) => new Rng(streamSeed(seed, ...key));
}

/** A pass's gradient t into the step's g: g = weight t, or g + weight t after the first pass (in doubles, rounded once). */
function writeGradient(g: Float32Array, t: Float32Array, { weight, accumulate }: GradientPass) {
  const weighted = nativeKernels().native?.weighted;
  if (!accumulate && weight === 1) g.set(t);
  else if (weighted) weighted(g, t, weight, accumulate);
  else if (!accumulate) for (let j = 0; j < g.length; j++) g[j] = weight * t[j];
  else for (let j = 0; j < g.length; j++) g[j] += weight * t[j];
}

/**
 * A BERT-family encoder with a sequence-classification (or regression) head, assembled from modules
 * (modules/families.ts) and changed by modifiers (modules/modifier.ts). Parameters live in Float32Arrays (the
 * optimizer updates them in place) mirrored into tfjs tensors for the step. The backward pass is written out by hand,
 * module by module: it avoids the tfjs gradient kernels that are slow or missing on wasm and cpu (transposed matMul,
 * gather's UnsortedSegmentSum) and allocates nothing the step does not dispose.
 */
export class EncoderClassifier {
  readonly specs: ParamSpec[];
  readonly values: Float32Array[];
  /** Device copies of the weights, made on first use after each change (embedding tables are never uploaded). */
  private tensors: (tf.Tensor | undefined)[] = [];
  /**
   * The weights when they live on a GPU (webgpu): owned and updated in place by the device pool, while `values`
   * is a host copy refreshed only when the pool syncs. Embedding tables are gathered there too.
   */
  private deviceWeights: tf.Tensor[] | undefined;
  private readonly index = new Map<string, number>();
  readonly regression: boolean;
  private readonly modules: ReturnType<typeof assemble>;

  /**
   * `values` (one array per spec, e.g. shared memory in a worker) default to zeros: loadPretrained fills them, and
   * initStrategyParams (checkpoint.ts) initialises the modifiers' parameters from a seed. A worker rebuilds the same
   * model from `modifierData(model.modifiers)` with the same modifier definitions.
   */
  constructor(
    readonly config: ModelConfig,
    readonly numLabels: number,
    values?: Float32Array[],
    readonly modifiers: readonly ModelModifier[] = [],
  ) {
    this.modules = assemble(config, numLabels);
    applyModifiers(this.modules, config, numLabels, modifiers);
    this.specs = this.modules.params.specs;
    this.specs.forEach((s, i) => this.index.set(s.name, i));
    this.values = values ?? this.specs.map((s) => new Float32Array(sizeOf(s)));
    this.regression = numLabels === 1;
  }

  /** Width of the embedding sum (before any projection to the hidden size). */
  private get embeddingWidth() {
    return this.modules.embeddings.options.width;
  }

  get parameterCount() {
    return this.values.reduce((a, v) => a + v.length, 0);
  }

  /** Position of a parameter by its Hugging Face name. */
  indexOf(name: string): number {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`no parameter ${name}`);
    return i;
  }

  /** Call after changing `values` so the next step sees them (on a GPU the pool uploads them instead). */
  markDirty() {
    for (const t of this.tensors) t?.dispose();
    this.tensors = [];
  }

  dispose() {
    this.markDirty();
  }

  /** Runs every later pass on these weights (one tensor per spec, engine layout), owned by the device pool. */
  placeOnDevice(weights: tf.Tensor[] | undefined) {
    this.markDirty();
    this.deviceWeights = weights;
  }

  get onDevice() {
    return this.deviceWeights !== undefined;
  }

  private tensor(i: number): tf.Tensor {
    if (this.deviceWeights) return this.deviceWeights[i];
    // Kept: the first use happens inside a step's tidy, which would otherwise dispose the weight.
    return (this.tensors[i] ??= tf.keep(tf.tensor(this.values[i], internalShape(this.specs[i]))));
  }

  /** predict and features on a GPU, where results are read back asynchronously. */
  async inferOnDevice(b: Batch, kind: 'predict' | 'features'): Promise<Float32Array> {
    const t = tf.tidy(() => {
      const f = this.forward(b, null);
      return kind === 'predict' ? f.logits : f.cls;
    });
    const out = (await t.data()) as Float32Array;
    t.dispose();
    return out;
  }

  /**
   * Forward and backward over one batch on a GPU: each trainable parameter's gradient goes to `emit` as a tensor
   * (which `emit` keeps, adding a parameter's later gradients to its first), and the mean loss stays on the device.
   * Dropout, the modules' draws and a consistency term are as in `step`, the term's distance computed on the device.
   */
  stepOnDevice(b: Batch, rng: Rng | null, emit: (p: Param, g: tf.Tensor) => void, extras: StepExtras = {}): tf.Scalar {
    const draws = drawsOf(extras);
    const consistency = extras.consistency?.term.weight ? extras.consistency : undefined;
    const ctx: BackwardContext = {
      weight: (p) => this.tensor(p.index),
      emit,
      buffer: (p) => {
        throw new Error(`${p.spec.name}: a host gradient buffer was asked for on the GPU`);
      },
      device: true,
    };
    return tf.tidy(() => {
      const f = this.forward(b, rng, draws);
      const { loss, dlogits } = this.lossAndGrad(f.logits, b);
      if (!consistency) {
        this.backward(b, f, dlogits, ctx);
        return loss as tf.Scalar;
      }
      // As in `step`, with the distance on the device; the second pass's gradients add to the first's in `emit`.
      const { term, noise } = consistency;
      const noisy = this.forward(b, rng, draws, {
        values: embeddingNoise(term, b.batch * b.seq * this.embeddingWidth, noise),
        wordGradient: term.noisyWordGradient,
      });
      const distance = this.regression ? squaredDifferenceOnDevice : symmetricKlOnDevice;
      const d = distance(f.logits, noisy.logits);
      this.backward(b, f, tf.add(dlogits, tf.mul(d.dclean, term.weight)) as T2, ctx);
      this.backward(b, noisy, tf.mul(d.dnoisy, term.weight) as T2, ctx);
      return tf.add(loss, tf.mul(d.value, term.weight)) as tf.Scalar;
    });
  }

  /** Forward pass only (dropout off): scores, and the last hidden state for inspection. */
  predict(b: Batch, withHidden = false): { logits: Float32Array; pooled?: Float32Array; hidden?: Float32Array } {
    const out = tf.tidy(() => {
      const f = this.forward(b, null);
      return [f.logits, ...(withHidden ? [f.pooled, f.hidden] : [])];
    });
    const [logits, pooled, hidden] = out.map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
    return {
      logits: Float32Array.from(logits),
      pooled: pooled && Float32Array.from(pooled),
      hidden: hidden && Float32Array.from(hidden),
    };
  }

  /** Encoder features of the first token ([CLS] / <s>) for a frozen-encoder probe. */
  features(b: Batch): Float32Array {
    const t = tf.tidy(() => this.forward(b, null).cls);
    const out = Float32Array.from(t.dataSync());
    t.dispose();
    return out;
  }

  /**
   * Forward and backward over one batch. Writes gradients into `grads` (one Float32Array per parameter, same
   * order as specs; a frozen parameter's is not written) and returns the mean loss. `rng` drives dropout; null runs
   * without dropout. With `pass`, the gradients are scaled by its weight and, when `accumulate`, added to what
   * `grads` holds (a shard taken in several passes). Each layer's gradients leave the heap, and its cached
   * activations are freed, as soon as its backward is done, so the heap's peak is the weights plus one pass's
   * activations. `extras` gives the modules' per-step draws their seed and may add a consistency term: a second
   * pass with noised embeddings (dropout drawn on from `rng`), the term's gradient flowing through both passes, and
   * the returned loss including the weighted term (two passes' activations at the peak then).
   */
  step(
    b: Batch,
    grads: Float32Array[],
    rng: Rng | null,
    pass: GradientPass = { weight: 1, accumulate: false },
    extras: StepExtras = {},
  ): StepResult {
    const ctx = this.backwardContext(grads, pass);
    const draws = drawsOf(extras);
    const consistency = extras.consistency?.term.weight ? extras.consistency : undefined;
    const result = tf.tidy(() => {
      const f = this.forward(b, rng, draws);
      const { loss, dlogits } = this.lossAndGrad(f.logits, b);
      if (!consistency) {
        this.backward(b, f, dlogits, ctx);
        return { loss, logits: f.logits };
      }
      const { term, noise } = consistency;
      const noisy = this.forward(b, rng, draws, {
        values: embeddingNoise(term, b.batch * b.seq * this.embeddingWidth, noise),
        wordGradient: term.noisyWordGradient,
      });
      const [clean, perturbed] = [f.logits.dataSync() as Float32Array, noisy.logits.dataSync() as Float32Array];
      const d = this.regression ? squaredDifference(clean, perturbed) : symmetricKl(clean, perturbed, this.numLabels);
      const shape = f.logits.shape;
      this.backward(b, f, tf.add(dlogits, tf.mul(tf.tensor2d(d.dclean, shape), term.weight)) as T2, ctx);
      // The perturbed pass's gradients add to the clean one's.
      const added = this.backwardContext(grads, { ...pass, accumulate: true });
      this.backward(b, noisy, tf.mul(tf.tensor2d(d.dnoisy, shape), term.weight) as T2, added);
      return { loss: tf.add(loss, term.weight * d.value), logits: f.logits };
    });
    const loss = result.loss.dataSync()[0];
    const logits = Float32Array.from(result.logits.dataSync());
    tf.dispose([result.loss, result.logits]);
    return { loss, logits };
  }

  private backwardContext(grads: Float32Array[], pass: GradientPass): BackwardContext {
    return {
      weight: (p) => this.tensor(p.index),
      emit: (p, t) => {
        writeGradient(grads[p.index], readNow(t), pass);
        t.dispose();
      },
      buffer: (p) => ({ grad: grads[p.index], pass }),
    };
  }

  private lossAndGrad(logits: T2, b: Batch) {
    const n = b.batch;
    if (this.regression) {
      const y = tf.tensor2d(b.labels, [n, 1]);
      const diff = tf.sub(logits, y);
      return { loss: tf.mean(tf.square(diff)), dlogits: tf.mul(diff, 2 / n) as T2 };
    }
    const onehot = tf.cast(tf.oneHot(tf.tensor1d(Int32Array.from(b.labels), 'int32'), this.numLabels), 'float32');
    const logp = tf.logSoftmax(logits);
    const loss = tf.neg(tf.div(tf.sum(tf.mul(onehot, logp)), n));
    return { loss, dlogits: tf.div(tf.sub(tf.exp(logp), onehot), n) as T2 };
  }

  /** Embeddings, encoder, then the head on each sequence's first token. Dropout masks come from `rng` in that order. */
  private forward(
    b: Batch,
    rng: Rng | null,
    draws: ForwardContext['draws'] = NO_DRAWS,
    noise?: ForwardContext['embeddingNoise'],
  ) {
    const c = this.config;
    const { embeddings, encoder, head } = this.modules;
    const on = rng !== null && this.modules.dropout;
    const rates = {
      hidden: on && c.hiddenDropout > 0 ? c.hiddenDropout : 0,
      attention: on && c.attentionDropout > 0 ? c.attentionDropout : 0,
    };
    const own: ForwardContext = {
      weight: (p) => this.tensor(p.index),
      values: (p) => {
        if (this.deviceWeights) throw new Error(`${p.spec.name}: host values were read on the GPU`);
        return this.values[p.index];
      },
      device: this.onDevice,
      rng,
      draws,
      embeddingNoise: noise,
      dropout: (shape, kind) => (rng && rates[kind] > 0 ? dropoutMask(rng, shape, rates[kind]) : null),
    };
    // Derived parameters' values, made once for the pass from the parameters they come from.
    const derived = new Map<number, Derived>();
    for (const [i, d] of this.modules.derived) derived.set(i, { derived: d, ...d.forward(own) });
    const ctx: ForwardContext = derived.size
      ? {
          ...own,
          weight: (p) => derived.get(p.index)?.value ?? own.weight(p),
          values: (p) => {
            const d = derived.get(p.index);
            if (!d) return own.values(p);
            if (this.deviceWeights) throw new Error(`${p.spec.name}: host values were read on the GPU`);
            return (d.host ??= d.value.dataSync() as Float32Array);
          },
        }
      : own;
    const emb = embeddings.forward(b, ctx);
    const enc = encoder.forward(emb.y, promptedMask(b, embeddings.promptLength), b.batch, ctx);
    const [B, T] = [b.batch, enc.y.shape[0] / b.batch];
    // The head reads each sequence's first row: [CLS] / <s>, or with a prompt its first row (as PEFT's model does).
    const cls = takeRows(enc.y, sequenceRows(B, T, 0, 1));
    const h = head.forward(cls, ctx);
    return { emb, enc, hidden: enc.y, cls, head: h, logits: h.y, pooled: h.pooled, length: T, derived };
  }

  /** Emits every trainable parameter's gradient, module by module, from the head down to the embedding tables. */
  private backward(b: Batch, f: ReturnType<EncoderClassifier['forward']>, dlogits: T2, outer: BackwardContext) {
    const { embeddings, encoder, head } = this.modules;
    // Gradients by derived parameters are summed over the modules that read them (tensors, and host rows of a
    // table), then handed to their derivation once the modules' backward is done.
    const sums = new Map<number, tf.Tensor>();
    const rows = new Map<number, Float32Array>();
    const ctx: BackwardContext = f.derived.size
      ? {
          ...outer,
          weight: (p) => f.derived.get(p.index)?.value ?? outer.weight(p),
          emit: (p, g) => {
            if (!f.derived.has(p.index)) return outer.emit(p, g);
            const prev = sums.get(p.index);
            sums.set(p.index, tf.keep(prev ? tf.add(prev, g) : g));
            if (prev) tf.dispose([prev, g]);
          },
          buffer: (p) => {
            if (!f.derived.has(p.index)) return outer.buffer(p);
            let grad = rows.get(p.index);
            if (!grad) rows.set(p.index, (grad = new Float32Array(sizeOf(p.spec))));
            return { grad, pass: { weight: 1, accumulate: true } };
          },
        }
      : outer;
    const [B, H, T] = [b.batch, this.config.hiddenSize, f.length];
    const [dcls] = head.backward(dlogits, f.head.cache, ctx);
    const dx = tf.reshape(tf.concat([tf.reshape(dcls, [B, 1, H]), tf.zeros([B, T - 1, H])], 1), [B * T, H]) as T2;
    const demb = encoder.backward(dx, f.enc.cache, ctx);
    tidyKeep(() => embeddings.backward(b, demb, f.emb.cache, ctx));
    for (const [i, d] of f.derived) {
      const table = rows.get(i);
      const own = sums.get(i);
      const g = table ? tf.tensor(table, internalShape(this.specs[i])) : own;
      const sum = table && own ? tf.add(own, g!) : g;
      if (sum) d.derived.backward(sum, d.cache, outer);
      tf.dispose([own, g, sum].filter((t): t is tf.Tensor => !!t));
    }
  }
}
