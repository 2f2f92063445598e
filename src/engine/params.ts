import type { ModelConfig } from './config.js';

export type ParamGroup = 'embeddings' | 'encoder' | 'head';

/** One trainable tensor, named as Hugging Face names it. */
export interface ParamSpec {
  name: string;
  /** Shape as stored in the checkpoint (dense weights are [out, in]). */
  shape: number[];
  /** Dense weights are kept as [in, out] inside the engine so no matMul needs a transposed operand. */
  transposed: boolean;
  /** AdamW decays every weight but biases and LayerNorm parameters (the reference's no_decay list). */
  decay: boolean;
  group: ParamGroup;
  layer?: number;
  init: 'normal' | 'zeros' | 'ones';
}

export const internalShape = (p: ParamSpec) => (p.transposed ? [p.shape[1], p.shape[0]] : p.shape);
export const sizeOf = (p: ParamSpec) => p.shape.reduce((a, b) => a * b, 1);

export const prefixOf = (c: ModelConfig) => `${c.family}.`;

/** Every parameter of an encoder plus its sequence-classification head, in a fixed order. */
export function paramSpecs(c: ModelConfig, numLabels: number): ParamSpec[] {
  const out: ParamSpec[] = [];
  const p = prefixOf(c);
  const h = c.hiddenSize;
  const e = c.embeddingSize;
  const dense = (name: string, inDim: number, outDim: number, group: ParamGroup, layer?: number) => {
    out.push({ name: `${name}.weight`, shape: [outDim, inDim], transposed: true, decay: true, group, layer, init: 'normal' });
    out.push({ name: `${name}.bias`, shape: [outDim], transposed: false, decay: false, group, layer, init: 'zeros' });
  };
  const norm = (name: string, dim: number, group: ParamGroup, layer?: number) => {
    out.push({ name: `${name}.weight`, shape: [dim], transposed: false, decay: false, group, layer, init: 'ones' });
    out.push({ name: `${name}.bias`, shape: [dim], transposed: false, decay: false, group, layer, init: 'zeros' });
  };
  const table = (name: string, rows: number) => out.push({ name, shape: [rows, e], transposed: false, decay: true, group: 'embeddings', init: 'normal' });
  table(`${p}embeddings.word_embeddings.weight`, c.vocabSize);
  table(`${p}embeddings.position_embeddings.weight`, c.maxPositions);
  table(`${p}embeddings.token_type_embeddings.weight`, c.typeVocabSize);
  norm(`${p}embeddings.LayerNorm`, e, 'embeddings');
  if (e !== h) dense(`${p}embeddings_project`, e, h, 'embeddings');
  for (let l = 0; l < c.numLayers; l++) {
    const L = `${p}encoder.layer.${l}`;
    dense(`${L}.attention.self.query`, h, h, 'encoder', l);
    dense(`${L}.attention.self.key`, h, h, 'encoder', l);
    dense(`${L}.attention.self.value`, h, h, 'encoder', l);
    dense(`${L}.attention.output.dense`, h, h, 'encoder', l);
    norm(`${L}.attention.output.LayerNorm`, h, 'encoder', l);
    dense(`${L}.intermediate.dense`, h, c.intermediateSize, 'encoder', l);
    dense(`${L}.output.dense`, c.intermediateSize, h, 'encoder', l);
    norm(`${L}.output.LayerNorm`, h, 'encoder', l);
  }
  if (c.family === 'bert') {
    dense(`${p}pooler.dense`, h, h, 'head');
    dense('classifier', h, numLabels, 'head');
  } else {
    dense('classifier.dense', h, h, 'head');
    dense('classifier.out_proj', h, numLabels, 'head');
  }
  return out;
}

/** Checkpoint tensors that belong to pretraining objectives: ignored with a note when fine-tuning. */
export const PRETRAINING_HEADS = [/^cls\./, /^lm_head\./, /^discriminator_predictions\./, /^generator_/, /^(bert|roberta|electra)\.embeddings\.position_ids$/, /^embeddings\.position_ids$/];
