import type { Family, ModelConfig } from '../config.js';
import { Activation } from './activation.js';
import { SelfAttention } from './attention.js';
import { Dense } from './dense.js';
import { Embeddings, type Positions } from './embeddings.js';
import { Encoder, EncoderLayer } from './encoder.js';
import { FeedForward } from './feed-forward.js';
import { ClassificationHead } from './heads.js';
import { LayerNorm } from './layer-norm.js';
import type { DerivedParam, Layer } from './module.js';
import { ParamTable, type ParamGroup } from './param.js';
import { Sublayer } from './sublayer.js';

export const prefixOf = (c: ModelConfig) => `${c.family}.`;

/** What differs between the families: how positions count, and the classification head's names and shape. */
interface FamilyTraits {
  positions: Positions;
  head: { dense: (prefix: string) => string; out: string; dropoutBefore: boolean; activation: 'tanh' | 'gelu' };
}

const FAMILIES: Record<Family, FamilyTraits> = {
  bert: {
    positions: 'absolute',
    head: { dense: (p) => `${p}pooler.dense`, out: 'classifier', dropoutBefore: false, activation: 'tanh' },
  },
  roberta: {
    positions: 'after-padding',
    head: { dense: () => 'classifier.dense', out: 'classifier.out_proj', dropoutBefore: true, activation: 'tanh' },
  },
  electra: {
    positions: 'absolute',
    head: { dense: () => 'classifier.dense', out: 'classifier.out_proj', dropoutBefore: true, activation: 'gelu' },
  },
};

export type DenseRole =
  | 'query'
  | 'key'
  | 'value'
  | 'attention-output'
  | 'intermediate'
  | 'output'
  | 'embeddings-projection'
  | 'head-dense'
  | 'head-out';

/** A dense layer of the model that a modifier may wrap, by its Hugging Face module name. */
export interface DenseSite {
  /** E.g. bert.encoder.layer.0.attention.self.query (its tensors are this name plus .weight and .bias). */
  name: string;
  role: DenseRole;
  layer?: number;
  inDim: number;
  outDim: number;
  /** The model's own dense layer at this site (its weight and bias), whatever wraps it. */
  dense: Dense;
  /** The layer the site holds now: the dense, or a wrapper around it. */
  get(): Layer;
  set(layer: Layer): void;
}

export interface Assembled {
  params: ParamTable;
  embeddings: Embeddings;
  encoder: Encoder;
  head: ClassificationHead;
  denseSites: DenseSite[];
  /** Whether training applies the config's dropout anywhere (a modifier may turn it all off: ModelEditor.noDropout). */
  dropout: boolean;
  /** Parameters whose value is made each pass from others (ModelEditor.deriveParam), by the parameter's index. */
  derived: Map<number, DerivedParam>;
}

/** Builds a family's encoder and classification head, declaring the parameters in the checkpoint's fixed order. */
export function assemble(c: ModelConfig, numLabels: number): Assembled {
  const params = new ParamTable();
  const traits = FAMILIES[c.family];
  const p = prefixOf(c);
  const h = c.hiddenSize;
  const e = c.embeddingSize;
  const denseSites: DenseSite[] = [];
  const dense = (name: string, inDim: number, outDim: number, group: ParamGroup, layer?: number) => {
    const { weight, bias } = params.dense(name, inDim, outDim, group, layer);
    return { name, layer, inDim, outDim, dense: new Dense(weight, bias) };
  };
  /** Registers a dense layer held in a field of its owner as a site a modifier can wrap. */
  const site = <O, K extends keyof O>(d: ReturnType<typeof dense>, role: DenseRole, owner: O, key: K) =>
    denseSites.push({ ...d, role, get: () => owner[key] as Layer, set: (l) => (owner[key] = l as O[K]) });
  const norm = (name: string, dim: number, group: ParamGroup, layer?: number) => {
    const n = params.norm(name, dim, group, layer);
    return new LayerNorm(n.weight, n.bias, c.layerNormEps);
  };

  const table = (name: string, rows: number) =>
    params.declare({ name, shape: [rows, e], transposed: false, decay: true, group: 'embeddings', init: 'normal' });
  const tables = {
    word: table(`${p}embeddings.word_embeddings.weight`, c.vocabSize),
    position: table(`${p}embeddings.position_embeddings.weight`, c.maxPositions),
    type: table(`${p}embeddings.token_type_embeddings.weight`, c.typeVocabSize),
  };
  const embNorm = norm(`${p}embeddings.LayerNorm`, e, 'embeddings');
  const projection = e !== h ? dense(`${p}embeddings_project`, e, h, 'embeddings') : undefined;
  const embeddings = new Embeddings(tables, embNorm, projection?.dense, {
    width: e,
    positions: traits.positions,
    padTokenId: c.padTokenId,
    typeVocabSize: c.typeVocabSize,
  });
  if (projection) site(projection, 'embeddings-projection', embeddings, 'projection');

  const layers: EncoderLayer[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const L = `${p}encoder.layer.${l}`;
    const [q, k, v, o] = ['self.query', 'self.key', 'self.value', 'output.dense'].map((n) =>
      dense(`${L}.attention.${n}`, h, h, 'encoder', l),
    );
    const attention = new SelfAttention(q.dense, k.dense, v.dense, o.dense, c.numHeads, h);
    const attentionNorm = norm(`${L}.attention.output.LayerNorm`, h, 'encoder', l);
    const inter = dense(`${L}.intermediate.dense`, h, c.intermediateSize, 'encoder', l);
    const out = dense(`${L}.output.dense`, c.intermediateSize, h, 'encoder', l);
    const feedForward = new FeedForward(inter.dense, new Activation(c.activation), out.dense);
    layers.push(
      new EncoderLayer(
        new Sublayer(attention, attentionNorm, h),
        new Sublayer(feedForward, norm(`${L}.output.LayerNorm`, h, 'encoder', l), h),
      ),
    );
    site(q, 'query', attention, 'query');
    site(k, 'key', attention, 'key');
    site(v, 'value', attention, 'value');
    site(o, 'attention-output', attention, 'output');
    site(inter, 'intermediate', feedForward, 'intermediate');
    site(out, 'output', feedForward, 'output');
  }

  const headDense = dense(traits.head.dense(p), h, h, 'head');
  const headOut = dense(traits.head.out, h, numLabels, 'head');
  const head = new ClassificationHead(
    headDense.dense,
    new Activation(traits.head.activation),
    headOut.dense,
    traits.head.dropoutBefore,
    h,
  );
  site(headDense, 'head-dense', head, 'dense');
  site(headOut, 'head-out', head, 'out');
  return { params, embeddings, encoder: new Encoder(layers), head, denseSites, dropout: true, derived: new Map() };
}
