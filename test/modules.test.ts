import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/engine/backend.js';
import { initStrategyParams, loadPretrained } from '../src/engine/checkpoint.js';
import { parseModelConfig, type ModelConfig } from '../src/engine/config.js';
import { matMul } from '../src/engine/kernels.js';
import { EncoderClassifier, type Batch } from '../src/engine/model.js';
import { Activation, type ActivationCache, type ActivationKind } from '../src/engine/modules/activation.js';
import { SelfAttention, type KeyValuePrefix } from '../src/engine/modules/attention.js';
import { Dense, denseBackward, denseForward } from '../src/engine/modules/dense.js';
import { Embeddings, type InputPrefix } from '../src/engine/modules/embeddings.js';
import { EncoderLayer } from '../src/engine/modules/encoder.js';
import type { DenseRole } from '../src/engine/modules/families.js';
import { FeedForward } from '../src/engine/modules/feed-forward.js';
import { ClassificationHead } from '../src/engine/modules/heads.js';
import { LayerNorm } from '../src/engine/modules/layer-norm.js';
import { Sublayer } from '../src/engine/modules/sublayer.js';
import { defineModifier, modifierData, type ModelEditor, type ModelModifier } from '../src/engine/modules/modifier.js';
import { sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from '../src/engine/modules/module.js';
import {
  internalShape,
  ParamTable,
  sizeOf,
  trains,
  type Param,
  type ParamGroup,
  type ParamSpec,
} from '../src/engine/modules/param.js';
import { paramSpecs } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { DELTA_DIR, deltaBatch, deltaReference } from './delta-fixture.js';
import { assertGradClose, checkModelGradients, dot, random } from './gradient-checks.js';
import { FIXTURES, microBatch, microModel } from './helpers.js';

// ---------------------------------------------------------------------------------------------------------------
// Test-only modifiers, written as a strategy of the next issue would write them: plain functions of their options.

/** W x + b + scale * B A x around any layer (a LoRA-like wrapper); the inner layer's weights stay as they are. */
class LowRank implements Layer<{ inner: unknown; x: T2; ax: T2 }> {
  constructor(
    readonly inner: Layer,
    readonly a: Param,
    readonly b: Param,
    readonly scale: number,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const inner = this.inner.forward(x, ctx);
    const ax = matMul(x, ctx.weight(this.a) as T2);
    return {
      y: tf.add(inner.y, tf.mul(matMul(ax, ctx.weight(this.b) as T2), this.scale)) as T2,
      cache: { inner: inner.cache, x, ax },
    };
  }

  backward(dy: T2, c: { inner: unknown; x: T2; ax: T2 }, ctx: BackwardContext): T2[] {
    const parts = this.inner.backward(dy, c.inner, ctx);
    const scaled = tf.mul(dy, this.scale) as T2;
    if (this.b.spec.trainable) ctx.emit(this.b, matMul(c.ax, scaled, true));
    const dax = matMul(scaled, ctx.weight(this.b) as T2, false, true);
    if (this.a.spec.trainable) ctx.emit(this.a, matMul(c.x, dax, true));
    return [...parts, matMul(dax, ctx.weight(this.a) as T2, false, true)];
  }
}

const loraLike = defineModifier<{ rank: number; alpha: number; roles: DenseRole[]; initB?: number }>(
  'test-lora',
  (editor, o) => {
    editor.setTrainable((s) => s.group === 'head');
    editor.wrapDense(
      (site) => o.roles.includes(site.role),
      (inner, site) => {
        const a = editor.addParam({
          name: `${site.name}.lora_A.weight`,
          shape: [o.rank, site.inDim],
          transposed: true,
          init: { uniform: 0.5 },
          layer: site.layer,
        });
        const b = editor.addParam({
          name: `${site.name}.lora_B.weight`,
          shape: [site.outDim, o.rank],
          transposed: true,
          init: o.initB ? { normal: o.initB } : 'zeros',
          layer: site.layer,
        });
        return new LowRank(inner, a, b, o.alpha / o.rank);
      },
    );
  },
);

/** y = x (W * sigmoid(S)) + b: a learned gate on the weight (a mask-tuning-like transform of W in forward). */
class GatedWeight implements Layer<T2> {
  constructor(
    readonly dense: Dense,
    readonly scores: Param,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const gated = tf.mul(ctx.weight(this.dense.weight), tf.sigmoid(ctx.weight(this.scores)));
    return { y: denseForward(x, gated, ctx.weight(this.dense.bias)), cache: x };
  }

  backward(dy: T2, x: T2, ctx: BackwardContext): T2[] {
    const w = ctx.weight(this.dense.weight);
    const gate = tf.sigmoid(ctx.weight(this.scores));
    const g = denseBackward(x, tf.mul(w, gate), dy, { dw: true, db: trains(this.dense.bias.spec) });
    if (this.dense.weight.spec.trainable) ctx.emit(this.dense.weight, tf.mul(g.dw!, gate));
    if (this.scores.spec.trainable) ctx.emit(this.scores, tf.mul(tf.mul(g.dw!, w), tf.mul(gate, tf.sub(1, gate))));
    if (g.db) ctx.emit(this.dense.bias, g.db);
    return [g.dx];
  }
}

const gateLike = defineModifier<{ roles: DenseRole[] }>('test-gate', (editor, o) => {
  editor.wrapDense(
    (site) => o.roles.includes(site.role),
    (inner, site) => {
      assert.equal(inner, site.dense, 'the gate transforms the dense weight itself');
      const scores = editor.addParam({
        name: `${site.name}.scores`,
        shape: [site.outDim, site.inDim],
        transposed: true,
        init: { normal: 1 },
        layer: site.layer,
      });
      return new GatedWeight(site.dense, scores);
    },
  );
});

/** down, nonlinearity, up, plus a skip connection: built from the engine's own Dense and Activation modules. */
type BottleneckCache = [T2, ActivationCache, T2];

class Bottleneck implements Layer<BottleneckCache> {
  constructor(
    readonly down: Dense,
    readonly act: Activation,
    readonly up: Dense,
    readonly skip: boolean,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const d = this.down.forward(x, ctx);
    const a = this.act.forward(d.y);
    const u = this.up.forward(a.y, ctx);
    return { y: this.skip ? (tf.add(x, u.y) as T2) : u.y, cache: [d.cache, a.cache, u.cache] as BottleneckCache };
  }

  backward(dy: T2, [d, a, u]: BottleneckCache, ctx: BackwardContext): T2[] {
    const [da] = this.act.backward(sum(this.up.backward(dy, u, ctx)), a);
    const parts = this.down.backward(da, d, ctx);
    return this.skip ? [dy, ...parts] : parts;
  }
}

function bottleneck(
  editor: ModelEditor,
  name: string,
  layer: number,
  width: number,
  skip: boolean,
  activation: ActivationKind,
) {
  const h = editor.config.hiddenSize;
  const dense = (part: string, inDim: number, outDim: number) =>
    new Dense(
      editor.addParam({
        name: `${name}.${part}.weight`,
        shape: [outDim, inDim],
        transposed: true,
        decay: true,
        init: { normal: 0.3 },
        layer,
      }),
      editor.addParam({ name: `${name}.${part}.bias`, shape: [outDim], init: { normal: 0.1 }, layer }),
    );
  return new Bottleneck(dense('down', h, width), new Activation(activation), dense('up', width, h), skip);
}

const adapterLike = defineModifier<{
  width: number;
  sublayer: 'attention' | 'feed-forward';
  placement: 'after' | 'parallel';
  activation?: ActivationKind;
}>('test-adapter', (editor, o) => {
  const site = `${o.sublayer === 'attention' ? 'attention' : 'output'}${o.placement === 'after' ? '' : '.parallel'}`;
  editor.insert({ sublayer: o.sublayer, placement: o.placement }, (l) =>
    bottleneck(editor, `adapter.layer.${l}.${site}`, l, o.width, o.placement === 'after', o.activation ?? 'gelu'),
  );
});

/** The same [length, hidden] rows for every sequence of a batch, and their gradient summed over the batch. */
const tiled = (p: Param, batch: number, ctx: ForwardContext) => tf.tile(ctx.weight(p), [batch, 1]) as T2;
const summedOverBatch = (d: T2, p: Param, ctx: BackwardContext) => {
  if (p.spec.trainable) ctx.emit(p, tf.sum(tf.reshape(d, [-1, ...p.spec.shape]), 0));
};

const prefixLike = defineModifier<{ length: number }>('test-prefix', (editor, o) => {
  const h = editor.config.hiddenSize;
  // The sequence's positions follow the prefix, as transformers numbers them with past_key_values (and the fixture does).
  editor.offsetPositions(o.length);
  editor.prefixAttention((l): KeyValuePrefix => {
    const keys = editor.addParam({
      name: `prefix.layer.${l}.key`,
      shape: [o.length, h],
      init: { normal: 0.5 },
      layer: l,
    });
    const values = editor.addParam({
      name: `prefix.layer.${l}.value`,
      shape: [o.length, h],
      init: { normal: 0.5 },
      layer: l,
    });
    return {
      length: o.length,
      forward: (batch, ctx) => ({ keys: tiled(keys, batch, ctx), values: tiled(values, batch, ctx), cache: null }),
      backward: (dk, dv, _c, ctx) => {
        summedOverBatch(dk, keys, ctx);
        summedOverBatch(dv, values, ctx);
      },
    };
  });
});

const promptLike = defineModifier<{ length: number }>('test-prompt', (editor, o) => {
  const rows = editor.addParam({
    name: 'prompt.embeddings',
    shape: [o.length, editor.config.embeddingSize],
    init: { normal: 0.5 },
    group: 'embeddings',
  });
  const prompt: InputPrefix = {
    length: o.length,
    forward: (batch, ctx) => ({ rows: tiled(rows, batch, ctx), cache: null }),
    backward: (d, _c, ctx) => summedOverBatch(d, rows, ctx),
  };
  editor.prependInput(prompt);
});

/** Only the model's own parameters of these groups train (the modifiers' own always do). */
const freezeLike = defineModifier<{ train: ParamGroup[] }>('test-freeze', (editor, o) =>
  editor.setTrainable((s) => o.train.includes(s.group)),
);

/** What a worker does: rebuild modifiers from { kind, options } with the same definitions. */
const DEFINITIONS: Record<string, (options: never) => ModelModifier> = {
  'test-freeze': freezeLike,
  'test-gate': gateLike,
  'test-lora': loraLike,
  'test-adapter': adapterLike,
  'test-prefix': prefixLike,
  'test-prompt': promptLike,
};
const rebuild = (data: { kind: string; options: unknown }[]) =>
  data.map((d) => DEFINITIONS[d.kind](d.options as never));

// ---------------------------------------------------------------------------------------------------------------
// Central differences of L = sum(y * R) along a random direction per parameter (and the input), in float64 from
// float32 outputs: small shapes keep the rounding well under the tolerance.

const H = 4;

/** The forward context of a check: weights from `values`, dropout masks from a fresh stream on every pass. */
function contexts(
  values: Float32Array[],
  dropout: boolean,
  seq?: { batch: number; length: number; mask: Float32Array },
) {
  const masks = new Rng(17);
  const forward: ForwardContext = {
    weight: (p) => tf.tensor(values[p.index], internalShape(p.spec)),
    values: (p) => values[p.index],
    rng: null,
    draws: () => null,
    dropout: (shape, kind) =>
      dropout
        ? tf.tensor(
            masks.dropoutMask(
              shape.reduce((a, b) => a * b, 1),
              kind === 'hidden' ? 0.2 : 0.3,
            ),
            shape,
          )
        : null,
    sequence: seq && {
      batch: seq.batch,
      length: seq.length,
      bias: tf.reshape(tf.mul(tf.sub(1, tf.tensor1d(seq.mask)), -1e9), [seq.batch, 1, 1, seq.length]) as tf.Tensor4D,
    },
  };
  const grads = new Map<number, Float32Array>();
  const backward: BackwardContext = {
    weight: forward.weight,
    emit: (p, g) => {
      assert.ok(!grads.has(p.index), `${p.spec.name} emitted twice`);
      grads.set(p.index, Float32Array.from(g.dataSync()));
    },
    buffer: (p) => {
      if (!grads.has(p.index)) grads.set(p.index, new Float32Array(sizeOf(p.spec)));
      return { grad: grads.get(p.index)!, pass: { weight: 1, accumulate: true } };
    },
  };
  return { forward, backward, grads };
}

const assertClose = assertGradClose;

/**
 * Checks a module's backward against central differences: for its input (when it has one) and for every
 * parameter, the directional derivative along a random direction. `run` does forward and backward with the given
 * contexts; a frozen parameter must not be emitted.
 */
function gradientCheck(
  name: string,
  table: ParamTable,
  input: { shape: number[] } | null,
  run: (x: T2 | null, f: ForwardContext) => { y: T2; back: (dy: T2, b: BackwardContext) => T2 | void },
  options: { dropout?: boolean; seq?: { batch: number; length: number; mask: Float32Array } } = {},
) {
  const rng = new Rng(3);
  const values = table.specs.map((s) => random(rng, sizeOf(s), 0.5).map((v) => (s.init === 'ones' ? 1 + v : v)));
  const x0 = input
    ? random(
        rng,
        input.shape.reduce((a, b) => a * b, 1),
      )
    : new Float32Array(0);
  let R: Float32Array | undefined;
  const lossAt = (x: Float32Array) =>
    tf.tidy(() => {
      const { forward } = contexts(values, !!options.dropout, options.seq);
      const y = run(input ? tf.tensor2d(x, input.shape as [number, number]) : null, forward).y.dataSync();
      R ??= random(new Rng(11), y.length);
      return dot(y, R);
    });
  lossAt(x0);
  const { forward, backward, grads } = contexts(values, !!options.dropout, options.seq);
  const dx = tf.tidy(() => {
    const r = run(input ? tf.tensor2d(x0, input.shape as [number, number]) : null, forward);
    const d = r.back(tf.tensor(R!, r.y.shape) as T2, backward);
    return d ? Float32Array.from(d.dataSync()) : undefined;
  });
  const eps = 3e-3;
  const probe = new Rng(23);
  if (input) {
    const v = random(probe, x0.length);
    const numeric =
      (lossAt(x0.map((xi, i) => xi + eps * v[i])) - lossAt(x0.map((xi, i) => xi - eps * v[i]))) / (2 * eps);
    assertClose(`${name}: input`, dot(dx!, v), numeric);
  }
  table.specs.forEach((spec, i) => {
    if (!spec.trainable) {
      assert.ok(!grads.has(i), `${name}: frozen ${spec.name} got a gradient`);
      return;
    }
    assert.ok(grads.has(i), `${name}: no gradient for ${spec.name}`);
    const v = random(probe, values[i].length);
    const orig = values[i];
    values[i] = orig.map((w, j) => w + eps * v[j]);
    const up = lossAt(x0);
    values[i] = orig.map((w, j) => w - eps * v[j]);
    const down = lossAt(x0);
    values[i] = orig;
    assertClose(`${name}: ${spec.name}`, dot(grads.get(i)!, v), (up - down) / (2 * eps));
  });
}

/** A Layer's check: forward then backward, the input gradient summed from its parts. */
const layerRun = (layer: Layer) => (x: T2 | null, f: ForwardContext) => {
  const r = layer.forward(x!, f);
  return { y: r.y, back: (dy: T2, b: BackwardContext) => sum(layer.backward(dy, r.cache, b)) };
};

const dense = (t: ParamTable, name: string, inDim: number, outDim: number) => {
  const p = t.dense(name, inDim, outDim, 'encoder');
  return new Dense(p.weight, p.bias);
};
const norm = (t: ParamTable, name: string, dim = H) => {
  const p = t.norm(name, dim, 'encoder');
  return new LayerNorm(p.weight, p.bias, 1e-12);
};
/** Two sequences of three tokens, the second with one padded position. */
const SEQ = { batch: 2, length: 3, mask: Float32Array.from([1, 1, 1, 1, 1, 0]) };

function attention(t: ParamTable, prefix?: number) {
  const [q, k, v, o] = ['q', 'k', 'v', 'o'].map((n) => dense(t, n, H, H));
  const a = new SelfAttention(q, k, v, o, 2, H);
  if (prefix) {
    const keys = t.declare({
      name: 'prefix.keys',
      shape: [prefix, H],
      transposed: false,
      decay: false,
      group: 'encoder',
      init: 'normal',
    });
    const values = t.declare({
      name: 'prefix.values',
      shape: [prefix, H],
      transposed: false,
      decay: false,
      group: 'encoder',
      init: 'normal',
    });
    a.prefix = {
      length: prefix,
      forward: (batch, ctx) => ({ keys: tiled(keys, batch, ctx), values: tiled(values, batch, ctx), cache: null }),
      backward: (dk, dv, _c, ctx) => {
        summedOverBatch(dk, keys, ctx);
        summedOverBatch(dv, values, ctx);
      },
    };
  }
  return a;
}

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`module gradients match central differences on ${backend}`, () => {
    before(async () => {
      await selectBackend(backend);
    });

    test('dense, and a frozen dense that computes dx but no dW', () => {
      const t = new ParamTable();
      gradientCheck('dense', t, { shape: [5, 3] }, layerRun(dense(t, 'd', 3, H)));
      const f = new ParamTable();
      const frozen = dense(f, 'd', 3, H);
      frozen.weight.spec.trainable = false;
      gradientCheck('frozen dense', f, { shape: [5, 3] }, layerRun(frozen));
    });

    test('layer norm', () => {
      const t = new ParamTable();
      gradientCheck('layer norm', t, { shape: [5, 6] }, layerRun(norm(t, 'n', 6)));
    });

    for (const kind of ['gelu', 'gelu_new', 'relu'] as ActivationKind[]) {
      test(`feed-forward (${kind})`, () => {
        const t = new ParamTable();
        gradientCheck(
          `feed-forward ${kind}`,
          t,
          { shape: [6, H] },
          layerRun(new FeedForward(dense(t, 'i', H, 8), new Activation(kind), dense(t, 'out', 8, H))),
        );
      });
    }

    test('self-attention with a padding mask and dropout, and with a key/value prefix', () => {
      const t = new ParamTable();
      gradientCheck('attention', t, { shape: [6, H] }, layerRun(attention(t)), { dropout: true, seq: SEQ });
      const p = new ParamTable();
      gradientCheck('attention with prefix', p, { shape: [6, H] }, layerRun(attention(p, 2)), {
        dropout: true,
        seq: SEQ,
      });
    });

    test('an encoder layer with inserted modules after and in parallel', () => {
      const layer = (t: ParamTable) =>
        new EncoderLayer(
          new Sublayer(attention(t), norm(t, 'ln1'), H),
          new Sublayer(
            new FeedForward(dense(t, 'i', H, 8), new Activation('gelu'), dense(t, 'out', 8, H)),
            norm(t, 'ln2'),
            H,
          ),
        );
      const t = new ParamTable();
      const l0 = layer(t);
      const adapter = (name: string, skip: boolean) =>
        new Bottleneck(dense(t, `${name}.down`, H, 2), new Activation('relu'), dense(t, `${name}.up`, 2, H), skip);
      l0.feedForward.after.push(adapter('after', true));
      l0.attention.parallel.push(adapter('parallel', false));
      gradientCheck('encoder layer', t, { shape: [6, H] }, layerRun(l0), { dropout: true, seq: SEQ });
    });

    test('embeddings: tables, LayerNorm and the projection (scattered rows), both position schemes, with a prompt', () => {
      for (const [positions, width, promptRows] of [
        ['absolute', H, 0],
        ['after-padding', 3, 0],
        ['absolute', H, 2],
        ['after-padding', 3, 2],
      ] as const) {
        const t = new ParamTable();
        const table = (name: string, rows: number) =>
          t.declare({
            name,
            shape: [rows, width],
            transposed: false,
            decay: true,
            group: 'embeddings',
            init: 'normal',
          });
        const tables = { word: table('word', 9), position: table('position', 8), type: table('type', 2) };
        const emb = new Embeddings(
          tables,
          norm(t, 'ln', width),
          width === H ? undefined : dense(t, 'project', width, H),
          { width, positions, padTokenId: 1, typeVocabSize: 2 },
        );
        if (promptRows) {
          // Every table trains here, so the word rows' and the prompt's gradients are checked apart.
          const rows = t.declare({
            name: 'prompt',
            shape: [promptRows, width],
            transposed: false,
            decay: false,
            group: 'embeddings',
            init: 'normal',
          });
          emb.prompt = {
            length: promptRows,
            forward: (batch, ctx) => ({ rows: tiled(rows, batch, ctx), cache: null }),
            backward: (d, _c, ctx) => summedOverBatch(d, rows, ctx),
          };
        }
        const b: Batch = {
          batch: 2,
          seq: 3,
          inputIds: Int32Array.from([2, 5, 8, 3, 5, 1]),
          tokenTypeIds: Int32Array.from([0, 1, 1, 0, 0, 1]),
          attentionMask: SEQ.mask,
          labels: new Float32Array(2),
        };
        gradientCheck(
          `embeddings (${positions}${promptRows ? ', a prompt' : ''})`,
          t,
          null,
          (_x, f) => {
            const r = emb.forward(b, f);
            return { y: r.y, back: (dy, ctx) => emb.backward(b, dy, r.cache, ctx) };
          },
          { dropout: true },
        );
      }
    });

    for (const [family, activation, dropoutBefore] of [
      ['bert', 'tanh', false],
      ['roberta', 'tanh', true],
      ['electra', 'gelu', true],
    ] as const) {
      test(`${family} classification head`, () => {
        const t = new ParamTable();
        const head = new ClassificationHead(
          dense(t, 'dense', H, H),
          new Activation(activation),
          dense(t, 'out', H, 3),
          dropoutBefore,
          H,
        );
        gradientCheck(`${family} head`, t, { shape: [2, H] }, layerRun(head), { dropout: true });
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------

function tinyConfig(family: 'bert' | 'roberta' | 'electra' = 'bert'): ModelConfig {
  return parseModelConfig(
    {
      model_type: family,
      vocab_size: 40,
      hidden_size: 8,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 16,
      max_position_embeddings: 16,
      type_vocab_size: 2,
      embedding_size: family === 'electra' ? 6 : 8,
    },
    '<test>',
  );
}

/** A micro model with modifiers, its own parameters copied from microModel and the modifiers' from their init. */
function modifiedModel(family: 'bert' | 'roberta' | 'electra', modifiers: ModelModifier[]) {
  const base = microModel({ family, embedding: family === 'electra' ? 6 : 8 });
  const model = new EncoderClassifier(base.config, base.numLabels, undefined, modifiers);
  base.values.forEach((v, i) => (model.values[i] = v));
  initStrategyParams(model, 4);
  base.dispose();
  return model;
}

describe('model modifiers', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  test("a modifier's parameters come after the model's own, in order, marked as the strategy's", () => {
    const config = tinyConfig();
    const own = paramSpecs(config, 3);
    const mods = [
      loraLike({ rank: 2, alpha: 4, roles: ['query', 'value'] }),
      adapterLike({ width: 2, sublayer: 'feed-forward', placement: 'after' }),
    ];
    const specs = paramSpecs(config, 3, mods);
    assert.deepEqual(
      specs.slice(0, own.length).map((s) => s.name),
      own.map((s) => s.name),
    );
    assert.ok(own.every((s) => s.source === 'checkpoint' && s.trainable));
    const added = specs.slice(own.length);
    assert.deepEqual(added.map((s) => s.name).slice(0, 4), [
      'bert.encoder.layer.0.attention.self.query.lora_A.weight',
      'bert.encoder.layer.0.attention.self.query.lora_B.weight',
      'bert.encoder.layer.0.attention.self.value.lora_A.weight',
      'bert.encoder.layer.0.attention.self.value.lora_B.weight',
    ]);
    assert.equal(added.length, 2 * 2 * 2 + 2 * 4);
    assert.ok(added.every((s) => s.source === 'strategy' && s.trainable));
    assert.deepEqual(
      specs.filter((s) => s.source === 'checkpoint' && s.trainable).map((s) => s.group),
      ['head', 'head', 'head', 'head'],
    );
  });

  test('a LoRA-like wrapper with B = 0 gives the base model outputs, bit for bit', () => {
    const base = microModel();
    const lora = modifiedModel('bert', [loraLike({ rank: 2, alpha: 4, roles: ['query', 'value', 'output'] })]);
    const b = microBatch();
    const want = base.predict(b, true);
    const got = lora.predict(b, true);
    assert.ok(want.hidden!.every((v, i) => v === got.hidden![i]) && want.logits.every((v, i) => v === got.logits[i]));
    base.dispose();
    lora.dispose();
  });

  const cases: [string, 'bert' | 'roberta' | 'electra', ModelModifier[]][] = [
    [
      'LoRA-like on every dense, with frozen base weights',
      'bert',
      [
        loraLike({
          rank: 2,
          alpha: 4,
          roles: ['query', 'key', 'value', 'attention-output', 'intermediate', 'output', 'head-dense'],
          initB: 0.3,
        }),
      ],
    ],
    [
      'adapters after the feed-forward and in parallel to the attention',
      'roberta',
      [
        adapterLike({ width: 3, sublayer: 'feed-forward', placement: 'after' }),
        adapterLike({ width: 2, sublayer: 'attention', placement: 'parallel' }),
      ],
    ],
    [
      'a weight transform in forward (a learned gate on W) on the feed-forward and the head',
      'bert',
      [gateLike({ roles: ['intermediate', 'output', 'head-out'] })],
    ],
    [
      'key/value prefixes and a prompt, over a wrapped projection',
      'electra',
      [
        prefixLike({ length: 2 }),
        promptLike({ length: 3 }),
        loraLike({ rank: 1, alpha: 1, roles: ['embeddings-projection', 'value'], initB: 0.3 }),
      ],
    ],
  ];
  for (const [name, family, mods] of cases) {
    test(`${name} (${family}): gradients match central differences; frozen buffers are not written`, () => {
      const model = modifiedModel(family, mods);
      const b = microBatch();
      const checked = checkModelGradients(model, b);
      assert.ok(checked >= model.specs.filter((s) => s.source === 'strategy').length);
      model.dispose();
    });
  }

  test('steps and predictions of a modified model leave the live tensor count and bytes flat', () => {
    const model = modifiedModel('bert', [
      promptLike({ length: 2 }),
      prefixLike({ length: 2 }),
      adapterLike({ width: 2, sublayer: 'feed-forward', placement: 'parallel' }),
      gateLike({ roles: ['output'] }),
      loraLike({ rank: 2, alpha: 2, roles: ['query'], initB: 0.2 }),
    ]);
    const b = microBatch();
    const grads = model.specs.map((s) => new Float32Array(sizeOf(s)));
    const rng = new Rng(1);
    const once = () => {
      model.step(b, grads, rng);
      model.predict(b, true);
      model.features(b);
    };
    once();
    const before = tf.memory();
    for (let i = 0; i < 10; i++) once();
    assert.equal(tf.memory().numTensors, before.numTensors);
    assert.equal(tf.memory().numBytes, before.numBytes);
    model.dispose();
  });

  test('rebuilt from plain data (as a worker does), a modified model steps identically', () => {
    const mods = [
      prefixLike({ length: 2 }),
      adapterLike({ width: 2, sublayer: 'attention', placement: 'after' }),
      gateLike({ roles: ['value'] }),
      loraLike({ rank: 2, alpha: 2, roles: ['key', 'value'], initB: 0.2 }),
    ];
    const model = modifiedModel('bert', mods);
    const copy = new EncoderClassifier(
      model.config,
      model.numLabels,
      model.values.map((v) => v.slice()),
      rebuild(structuredClone(modifierData(mods))),
    );
    assert.deepEqual(copy.specs, model.specs);
    const b = microBatch();
    const g1 = model.specs.map((s) => new Float32Array(sizeOf(s)));
    const g2 = model.specs.map((s) => new Float32Array(sizeOf(s)));
    assert.equal(model.step(b, g1, new Rng(2)).loss, copy.step(b, g2, new Rng(2)).loss);
    assert.deepEqual(g1, g2);
    model.dispose();
    copy.dispose();
  });

  test("the loader initialises a modifier's parameters from the seed instead of calling them missing", () => {
    const dir = `${FIXTURES}/bert-tiny-random`;
    const mods = [loraLike({ rank: 2, alpha: 4, roles: ['query'] })];
    const a = loadPretrained(dir, { numLabels: 2, seed: 3, modifiers: mods });
    const plain = loadPretrained(dir, { numLabels: 2, seed: 3 });
    assert.deepEqual(a.notes, plain.notes);
    plain.model.specs.forEach((s, i) => assert.deepEqual(a.model.values[i], plain.model.values[i], s.name));
    const loraA = a.model.indexOf('bert.encoder.layer.1.attention.self.query.lora_A.weight');
    assert.ok(a.model.values[loraA].some((v) => v !== 0) && a.model.values[loraA].every((v) => Math.abs(v) <= 0.5));
    assert.ok(
      a.model.values[a.model.indexOf('bert.encoder.layer.1.attention.self.query.lora_B.weight')].every((v) => v === 0),
    );
    assert.deepEqual(
      loadPretrained(dir, { numLabels: 2, seed: 3, modifiers: mods }).model.values[loraA],
      a.model.values[loraA],
    );
    assert.notDeepEqual(
      loadPretrained(dir, { numLabels: 2, seed: 4, modifiers: mods }).model.values[loraA],
      a.model.values[loraA],
    );
  });
});

/** The delta-tuning fixture (test/fixtures/delta, computed by PyTorch in float64): the test modifiers reproduce it. */
describe('the test modifiers against the PyTorch delta-tuning fixture', () => {
  const batch = deltaBatch();
  /** [out, in] (saved) to [in, out] (engine) for transposed specs, and back: the same swap of two axes. */
  const swap = (spec: ParamSpec, v: ArrayLike<number>, toEngine: boolean) => {
    if (!spec.transposed) return Float32Array.from(v);
    const [rows, cols] = toEngine ? spec.shape : [spec.shape[1], spec.shape[0]];
    const out = new Float32Array(v.length);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = v[i * cols + j];
    return out;
  };
  const close = (got: ArrayLike<number>, want: readonly number[], what: string) => {
    assert.equal(got.length, want.length, what);
    const worst = Math.max(...want.map((w, i) => Math.abs(got[i] - w)));
    assert.ok(worst <= 1e-4, `${what}: largest difference ${worst}`);
  };
  const head: ParamGroup[] = ['head'];
  const cases: Record<string, ModelModifier[]> = {
    lora: [loraLike({ rank: 4, alpha: 8, roles: ['query', 'value'] })],
    'adapter-houlsby': [
      freezeLike({ train: head }),
      adapterLike({ width: 8, sublayer: 'attention', placement: 'after', activation: 'relu' }),
      adapterLike({ width: 8, sublayer: 'feed-forward', placement: 'after', activation: 'relu' }),
    ],
    prefix: [freezeLike({ train: head }), prefixLike({ length: 3 })],
  };

  before(async () => {
    await selectBackend('wasm');
  });

  for (const [name, modifiers] of Object.entries(cases)) {
    test(`${name}: logits, loss and every trainable gradient within 1e-4`, () => {
      const expected = deltaReference.cases[name];
      const { model } = loadPretrained(DELTA_DIR, { numLabels: 2, seed: 1, modifiers });
      for (const [param, { values }] of Object.entries(expected.params as Record<string, { values: number[] }>)) {
        const i = model.indexOf(param);
        model.values[i] = swap(model.specs[i], values, true);
      }
      model.markDirty();
      assert.deepEqual(
        model.specs
          .filter((s) => s.trainable)
          .map((s) => s.name)
          .sort(),
        [...expected.trainable].sort(),
      );
      close(model.predict(batch).logits, expected.logits, 'logits');
      const grads = model.values.map((v) => new Float32Array(v.length));
      const { loss } = model.step(batch, grads, null);
      assert.ok(Math.abs(loss - expected.loss) <= 1e-4, `loss ${loss} against ${expected.loss}`);
      for (const param of expected.trainable as string[]) {
        const i = model.indexOf(param);
        close(swap(model.specs[i], grads[i], false), expected.grads[param], `gradient of ${param}`);
      }
      model.dispose();
    });
  }
});
