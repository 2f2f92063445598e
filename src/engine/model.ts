import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.js';
import { internalShape, paramSpecs, prefixOf, sizeOf, type ParamSpec } from './params.js';
import { columnSum, embeddingSum, gelu, headContext, headScores, matMul, tidyKeep } from './kernels.js';
import type { Rng } from './rng.js';

/** A padded batch, row-major [batch, seq]. */
export interface Batch {
  batch: number;
  seq: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Float32Array;
  /** Class indices, or scores for regression. */
  labels: Float32Array;
}

export interface StepResult {
  loss: number;
  /** Output scores [batch, numLabels]. */
  logits: Float32Array;
}

type T2 = tf.Tensor2D;

/** How one pass's gradients enter the buffers: scaled by `weight` (its share of the shard's rows), added or stored. */
export interface GradientPass {
  weight: number;
  accumulate: boolean;
}

function writeGradient(g: Float32Array, t: Float32Array, { weight, accumulate }: GradientPass) {
  if (!accumulate && weight === 1) g.set(t);
  else if (!accumulate) for (let j = 0; j < g.length; j++) g[j] = weight * t[j];
  else for (let j = 0; j < g.length; j++) g[j] += weight * t[j];
}

/** Dense layer in the engine layout (w is [in, out]): y = x w + b. */
const dense = (x: T2, w: tf.Tensor, b: tf.Tensor) => tf.add(matMul(x, w as T2), b) as T2;

/** Backward of dense: dw = x^T dy, db = column sums of dy, dx = dy w^T. */
function denseBack(x: T2, w: tf.Tensor, dy: T2) {
  return tidyKeep(() => ({ dw: matMul(x, dy, true), db: columnSum(dy), dx: matMul(dy, w as T2, false, true) }));
}

function layerNorm(x: T2, g: tf.Tensor, b: tf.Tensor, eps: number) {
  return tidyKeep(() => {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    const xhat = tf.mul(xc, rstd) as T2;
    return { y: tf.add(tf.mul(xhat, g), b) as T2, xhat, rstd };
  });
}

function layerNormBack(dy: T2, g: tf.Tensor, cache: { xhat: T2; rstd: tf.Tensor }) {
  return tidyKeep(() => {
    const dxhat = tf.mul(dy, g);
    const dx = tf.mul(cache.rstd, tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(cache.xhat, tf.mean(tf.mul(dxhat, cache.xhat), -1, true)))) as T2;
    return { dx, dg: columnSum(tf.mul(dy, cache.xhat) as T2), db: columnSum(dy) };
  });
}

type Activation = ModelConfig['activation'] | 'tanh';
/** y, plus for erf-GELU its derivative, computed with y so the backward pass evaluates no transcendental. */
type Activated = { y: T2; dydx?: tf.Tensor };

function activation(kind: Activation, x: T2): Activated {
  switch (kind) {
    case 'gelu':
      return gelu(x);
    case 'gelu_new':
      return { y: tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1)) as T2 };
    case 'relu':
      return { y: tf.relu(x) };
    case 'tanh':
      return { y: tf.tanh(x) };
  }
}

/** d activation / dx, given the input x and the forward result. */
function activationGrad(kind: Activation, x: T2, { y, dydx }: Activated): tf.Tensor {
  return tf.tidy(() => {
    switch (kind) {
      case 'gelu':
        return dydx!;
      case 'gelu_new': {
        const c = Math.sqrt(2 / Math.PI);
        const t = tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c));
        return tf.add(tf.mul(tf.add(t, 1), 0.5), tf.mul(tf.mul(tf.mul(x, 0.5), tf.sub(1, tf.square(t))), tf.mul(tf.add(tf.mul(tf.square(x), 3 * 0.044715), 1), c)));
      }
      case 'relu':
        return tf.step(x);
      case 'tanh':
        return tf.sub(1, tf.square(y));
    }
  });
}

/**
 * A BERT-family encoder with a sequence-classification (or regression) head. Parameters live in
 * Float32Arrays (the optimizer updates them in place) mirrored into tfjs tensors for the step.
 * The backward pass is written out by hand: it avoids the tfjs gradient kernels that are slow or
 * missing on wasm and cpu (transposed matMul, gather's UnsortedSegmentSum) and allocates nothing
 * the step does not dispose.
 */
export class EncoderClassifier {
  readonly specs: ParamSpec[];
  readonly values: Float32Array[];
  /** Device copies of the weights, made on first use after each change (embedding tables are never uploaded). */
  private tensors: (tf.Tensor | undefined)[] = [];
  private readonly index = new Map<string, number>();
  readonly regression: boolean;
  private lastRows: { batch: Batch; tables: [string, Int32Array][] } | undefined;

  constructor(readonly config: ModelConfig, readonly numLabels: number, values?: Float32Array[]) {
    this.specs = paramSpecs(config, numLabels);
    this.specs.forEach((s, i) => this.index.set(s.name, i));
    this.values = values ?? this.specs.map((s) => new Float32Array(sizeOf(s)));
    this.regression = numLabels === 1;
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

  /** Call after changing `values` so the next step sees them. */
  markDirty() {
    for (const t of this.tensors) t?.dispose();
    this.tensors = [];
  }

  dispose() {
    this.markDirty();
  }

  private p(name: string): tf.Tensor {
    const i = this.indexOf(name);
    // Kept: the first use happens inside a step's tidy, which would otherwise dispose the weight.
    return (this.tensors[i] ??= tf.keep(tf.tensor(this.values[i], internalShape(this.specs[i]))));
  }

  /** Forward pass only (dropout off): scores, and the last hidden state for inspection. */
  predict(b: Batch, withHidden = false): { logits: Float32Array; pooled?: Float32Array; hidden?: Float32Array } {
    const out = tf.tidy(() => {
      const f = this.forward(b, null);
      return [f.logits, ...(withHidden ? [f.pooled, f.hidden] : [])];
    });
    const [logits, pooled, hidden] = out.map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
    return { logits: Float32Array.from(logits), pooled: pooled && Float32Array.from(pooled), hidden: hidden && Float32Array.from(hidden) };
  }

  /** Encoder features of the first token ([CLS] / <s>) for a frozen-encoder probe. */
  features(b: Batch): Float32Array {
    const t = tf.tidy(() => tf.slice(tf.reshape(this.forward(b, null).hidden, [b.batch, b.seq, this.config.hiddenSize]), [0, 0, 0], [b.batch, 1, this.config.hiddenSize]));
    const out = Float32Array.from(t.dataSync());
    t.dispose();
    return out;
  }

  /**
   * Forward and backward over one batch. Writes gradients into `grads` (one Float32Array per parameter, same
   * order as specs) and returns the mean loss. `rng` drives dropout; null runs without dropout. With `pass`,
   * the gradients are scaled by its weight and, when `accumulate`, added to what `grads` holds (a shard taken
   * in several passes). Each layer's gradients leave the heap, and its cached activations are freed, as soon
   * as its backward is done, so the heap's peak is the weights plus one pass's activations.
   */
  step(b: Batch, grads: Float32Array[], rng: Rng | null, pass: GradientPass = { weight: 1, accumulate: false }): StepResult {
    const c = this.config;
    const dropout = rng && c.hiddenDropout > 0;
    const attnDropout = rng && c.attentionDropout > 0;
    const emit = (i: number, t: tf.Tensor) => {
      writeGradient(grads[i], t.dataSync() as Float32Array, pass);
      t.dispose();
    };
    const result = tf.tidy(() => {
      const f = this.forward(b, rng ? { rng, hidden: dropout ? c.hiddenDropout : 0, attention: attnDropout ? c.attentionDropout : 0 } : null);
      const { loss, dlogits } = this.lossAndGrad(f.logits, b);
      return { loss, logits: f.logits, demb: this.backward(b, f, dlogits, emit) };
    });
    const loss = result.loss.dataSync()[0];
    const logits = Float32Array.from(result.logits.dataSync());
    this.embeddingGrads(b, result.demb, grads, pass);
    tf.dispose([result.loss, result.logits, result.demb]);
    return { loss, logits };
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

  private forward(b: Batch, drop: { rng: Rng; hidden: number; attention: number } | null) {
    const { c, B, T, H, D, heads, pre } = this.dims(b);
    const mask = (shape: number[], rate: number) => (drop && rate > 0 ? tf.tensor(drop.rng.dropoutMask(shape.reduce((x, y) => x * y, 1), rate), shape) : null);
    const applyDrop = (x: T2, m: tf.Tensor | null) => (m ? (tf.mul(x, m) as T2) : x);

    const emb = tf.tensor2d(embeddingSum(this.embeddingTables(b).map(([name, rows]) => ({ values: this.values[this.indexOf(name)], rows })), c.embeddingSize, B * T), [B * T, c.embeddingSize]);
    const ln0 = layerNorm(emb, this.p(`${pre}embeddings.LayerNorm.weight`), this.p(`${pre}embeddings.LayerNorm.bias`), c.layerNormEps);
    const m0 = mask([B * T, c.embeddingSize], drop?.hidden ?? 0);
    let x = applyDrop(ln0.y, m0);
    const embOut = x;
    if (c.embeddingSize !== H) x = dense(x, this.p(`${pre}embeddings_project.weight`), this.p(`${pre}embeddings_project.bias`));
    // (1 - mask) * -1e9 added to every query row: padded keys get zero attention.
    const bias = tf.reshape(tf.mul(tf.sub(1, tf.tensor1d(b.attentionMask)), -1e9), [B, 1, 1, T]);
    const layers = [];
    for (let l = 0; l < c.numLayers; l++) {
      // One tidy per layer keeps only what the backward pass reads; the rest is freed at once, which bounds
      // the wasm heap (it never shrinks) by the cached activations rather than every intermediate of the step.
      const cache = tidyKeep(() => {
        const L = `${pre}encoder.layer.${l}`;
        const input = x;
        // q, k, v and ctx stay [B*T, H]: the head products address each head in place.
        const q = dense(x, this.p(`${L}.attention.self.query.weight`), this.p(`${L}.attention.self.query.bias`));
        const k = dense(x, this.p(`${L}.attention.self.key.weight`), this.p(`${L}.attention.self.key.bias`));
        const v = dense(x, this.p(`${L}.attention.self.value.weight`), this.p(`${L}.attention.self.value.bias`));
        const scores = tf.add(tf.mul(headScores(q, k, heads), 1 / Math.sqrt(D)), bias);
        const probs = tf.softmax(scores);
        const pm = mask([B, heads.A, T, T], drop?.attention ?? 0);
        const probsDropped = (pm ? tf.mul(probs, pm) : probs) as tf.Tensor4D;
        const ctx = headContext(probsDropped, v, heads);
        const attnOut = dense(ctx, this.p(`${L}.attention.output.dense.weight`), this.p(`${L}.attention.output.dense.bias`));
        const m1 = mask([B * T, H], drop?.hidden ?? 0);
        const ln1 = layerNorm(tf.add(applyDrop(attnOut, m1), input) as T2, this.p(`${L}.attention.output.LayerNorm.weight`), this.p(`${L}.attention.output.LayerNorm.bias`), c.layerNormEps);
        const inter = dense(ln1.y, this.p(`${L}.intermediate.dense.weight`), this.p(`${L}.intermediate.dense.bias`));
        const act = activation(c.activation, inter);
        const out = dense(act.y, this.p(`${L}.output.dense.weight`), this.p(`${L}.output.dense.bias`));
        const m2 = mask([B * T, H], drop?.hidden ?? 0);
        const ln2 = layerNorm(tf.add(applyDrop(out, m2), ln1.y) as T2, this.p(`${L}.output.LayerNorm.weight`), this.p(`${L}.output.LayerNorm.bias`), c.layerNormEps);
        return { input, q, k, v, probs, pm, probsDropped, ctx, m1, ln1, inter, act, m2, ln2 };
      });
      layers.push(cache);
      x = cache.ln2.y;
    }
    const cls = tf.reshape(tf.slice(tf.reshape(x, [B, T, H]), [0, 0, 0], [B, 1, H]), [B, H]) as T2;
    const head = this.headForward(cls, (shape) => mask(shape, drop?.hidden ?? 0), applyDrop);
    return { emb, ln0, m0, embOut, layers, hidden: x, cls, ...head };
  }

  /** BERT: tanh pooler, dropout, linear. RoBERTa/ELECTRA: dropout, dense, tanh/gelu, dropout, out_proj. */
  private headForward(cls: T2, mask: (shape: number[]) => tf.Tensor | null, applyDrop: (x: T2, m: tf.Tensor | null) => T2) {
    const c = this.config;
    const B = cls.shape[0];
    const bert = c.family === 'bert';
    const names = bert ? { dense: `${prefixOf(c)}pooler.dense`, out: 'classifier' } : { dense: 'classifier.dense', out: 'classifier.out_proj' };
    const act: 'tanh' | 'gelu' = c.family === 'electra' ? 'gelu' : 'tanh';
    const mPre = bert ? null : mask([B, c.hiddenSize]);
    const headIn = applyDrop(cls, mPre);
    const z = dense(headIn, this.p(`${names.dense}.weight`), this.p(`${names.dense}.bias`));
    const activated = activation(act, z);
    const pooled = activated.y;
    const mPost = mask([B, c.hiddenSize]);
    const dropped = applyDrop(pooled, mPost);
    const logits = dense(dropped, this.p(`${names.out}.weight`), this.p(`${names.out}.bias`));
    return { names, act, mPre, headIn, z, activated, pooled, mPost, dropped, logits };
  }

  /** Batch, sequence, hidden and head sizes of a step, and the parameter-name prefix. */
  private dims(b: Batch) {
    const c = this.config;
    const [B, T, A, D] = [b.batch, b.seq, c.numHeads, c.hiddenSize / c.numHeads];
    return { c, B, T, H: c.hiddenSize, D, heads: { B, T, A, D }, pre: prefixOf(c) };
  }

  /** Hands each gradient tensor, by Hugging Face name, to `emit` (which takes ownership). */
  private collector(emit: (index: number, g: tf.Tensor) => void) {
    const put = (name: string, g: tf.Tensor) => emit(this.indexOf(name), g);
    const putDense = (name: string, g: { dw: tf.Tensor; db: tf.Tensor }) => {
      put(`${name}.weight`, g.dw);
      put(`${name}.bias`, g.db);
    };
    return { put, putDense };
  }

  /** Emits every parameter gradient; returns the gradient at the embedding sum (scattered in JS). */
  private backward(b: Batch, f: ReturnType<EncoderClassifier['forward']>, dlogits: T2, emit: (index: number, g: tf.Tensor) => void): tf.Tensor {
    const { c, B, T, H, D, heads, pre } = this.dims(b);
    const { put, putDense } = this.collector(emit);
    const mul = (x: T2, m: tf.Tensor | null) => (m ? (tf.mul(x, m) as T2) : x);

    // Head.
    const out = denseBack(f.dropped, this.p(`${f.names.out}.weight`), dlogits);
    putDense(f.names.out, out);
    const dz = tf.mul(mul(out.dx, f.mPost), activationGrad(f.act, f.z, f.activated)) as T2;
    const hd = denseBack(f.headIn, this.p(`${f.names.dense}.weight`), dz);
    putDense(f.names.dense, hd);
    const dcls = mul(hd.dx, f.mPre);
    let dx = tf.reshape(tf.concat([tf.reshape(dcls, [B, 1, H]), tf.zeros([B, T - 1, H])], 1), [B * T, H]) as T2;

    for (let l = c.numLayers - 1; l >= 0; l--) {
      const upstream = dx;
      // Per-layer tidy: only dx outlives it; the parameter gradients leave as they are made.
      dx = tidyKeep(() => {
        const L = `${pre}encoder.layer.${l}`;
        const s = f.layers[l];
        const ln2 = layerNormBack(upstream, this.p(`${L}.output.LayerNorm.weight`), s.ln2);
        put(`${L}.output.LayerNorm.weight`, ln2.dg);
        put(`${L}.output.LayerNorm.bias`, ln2.db);
        const o = denseBack(s.act.y, this.p(`${L}.output.dense.weight`), mul(ln2.dx, s.m2));
        putDense(`${L}.output.dense`, o);
        const dInter = tf.mul(o.dx, activationGrad(c.activation, s.inter, s.act)) as T2;
        const i = denseBack(s.ln1.y, this.p(`${L}.intermediate.dense.weight`), dInter);
        putDense(`${L}.intermediate.dense`, i);
        const ln1 = layerNormBack(tf.add(ln2.dx, i.dx) as T2, this.p(`${L}.attention.output.LayerNorm.weight`), s.ln1);
        put(`${L}.attention.output.LayerNorm.weight`, ln1.dg);
        put(`${L}.attention.output.LayerNorm.bias`, ln1.db);
        const ao = denseBack(s.ctx, this.p(`${L}.attention.output.dense.weight`), mul(ln1.dx, s.m1));
        putDense(`${L}.attention.output.dense`, ao);
        const { dq, dk, dv } = tidyKeep(() => {
          const dctx = ao.dx;
          let dprobs = headScores(dctx, s.v, heads);
          if (s.pm) dprobs = tf.mul(dprobs, s.pm);
          const dscores = tf.mul(tf.mul(s.probs, tf.sub(dprobs, tf.sum(tf.mul(dprobs, s.probs), -1, true))), 1 / Math.sqrt(D)) as tf.Tensor4D;
          return { dv: headContext(s.probsDropped, dctx, heads, true), dq: headContext(dscores, s.k, heads), dk: headContext(dscores, s.q, heads, true) };
        });
        const gq = denseBack(s.input, this.p(`${L}.attention.self.query.weight`), dq);
        const gk = denseBack(s.input, this.p(`${L}.attention.self.key.weight`), dk);
        const gv = denseBack(s.input, this.p(`${L}.attention.self.value.weight`), dv);
        putDense(`${L}.attention.self.query`, gq);
        putDense(`${L}.attention.self.key`, gk);
        putDense(`${L}.attention.self.value`, gv);
        return tf.addN([ln1.dx, gq.dx, gk.dx, gv.dx]) as T2;
      });
      // This layer's cached activations are read by no other layer's backward (its input is the layer below's
      // output, which that layer's backward does not read).
      tf.dispose(Object.values(f.layers[l]).flatMap((v) => (v === null ? [] : v instanceof tf.Tensor ? [v] : Object.values(v).filter((t) => t !== undefined))));
    }
    if (c.embeddingSize !== H) {
      const pj = denseBack(f.embOut, this.p(`${pre}embeddings_project.weight`), dx);
      putDense(`${pre}embeddings_project`, pj);
      dx = pj.dx;
    }
    const ln0 = layerNormBack(mul(dx, f.m0), this.p(`${pre}embeddings.LayerNorm.weight`), f.ln0);
    put(`${pre}embeddings.LayerNorm.weight`, ln0.dg);
    put(`${pre}embeddings.LayerNorm.bias`, ln0.db);
    return ln0.dx;
  }

  /** Scatter-adds the embedding-sum gradient into the three tables (the gather gradient, done in JS). */
  private embeddingGrads(b: Batch, demb: tf.Tensor, grads: Float32Array[], pass: GradientPass) {
    const E = this.config.embeddingSize;
    const d = demb.dataSync() as Float32Array;
    for (const [name, rows] of this.embeddingTables(b)) {
      const g = grads[this.indexOf(name)];
      if (!pass.accumulate) g.fill(0);
      if (pass.weight === 1) {
        for (let t = 0; t < rows.length; t++) {
          const src = t * E;
          const dst = rows[t] * E;
          for (let j = 0; j < E; j++) g[dst + j] += d[src + j];
        }
      } else {
        for (let t = 0; t < rows.length; t++) {
          const src = t * E;
          const dst = rows[t] * E;
          for (let j = 0; j < E; j++) g[dst + j] += pass.weight * d[src + j];
        }
      }
    }
  }

  /** The three embedding tables and the row each token reads, cached per batch (forward and backward share it). */
  private embeddingTables(b: Batch): [string, Int32Array][] {
    if (this.lastRows?.batch !== b) {
      const pre = prefixOf(this.config);
      this.lastRows = {
        batch: b,
        tables: [
          [`${pre}embeddings.word_embeddings.weight`, b.inputIds],
          [`${pre}embeddings.position_embeddings.weight`, this.positionIds(b)],
          [`${pre}embeddings.token_type_embeddings.weight`, this.typeIds(b)],
        ],
      };
    }
    return this.lastRows.tables;
  }

  /** Models with one token type (RoBERTa) read every segment as type 0. */
  private typeIds(b: Batch): Int32Array {
    return this.config.typeVocabSize > 1 ? b.tokenTypeIds : new Int32Array(b.tokenTypeIds.length);
  }

  /** BERT/ELECTRA count positions from 0; RoBERTa from padding_idx + 1 over real tokens only. */
  private positionIds(b: Batch): Int32Array {
    const out = new Int32Array(b.batch * b.seq);
    const roberta = this.config.family === 'roberta';
    for (let i = 0; i < b.batch; i++) {
      let count = 0;
      for (let t = 0; t < b.seq; t++) {
        const k = i * b.seq + t;
        if (!roberta) out[k] = t;
        else out[k] = b.attentionMask[k] > 0 ? this.config.padTokenId + ++count : this.config.padTokenId;
      }
    }
    return out;
  }
}
