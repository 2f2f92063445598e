export type ParamGroup = 'embeddings' | 'encoder' | 'head';

/**
/**
 * How a parameter is initialised when no checkpoint gives it: a constant, seeded draws of the given spread (about
 * `mean` for uniform ones, default 0; a normal one redrawn outside ±`truncate` when given), a copy of another parameter's loaded value (a frozen copy of a pretrained
 * weight, same shape and layout), or (a modifier's [rows, width] parameter only) copies of rows of another
 * parameter of the same width, each row index drawn uniformly from the seeded stream (prompt tuning's
 * sampled-vocabulary init).
 */
export type ParamInit =
  | 'normal'
  | 'zeros'
  | 'ones'
  | { constant: number }
  | { normal: number; truncate?: number }
  | { uniform: number; mean?: number }
  | { copyOf: string }
  | { rowsOf: string };

/** One tensor of the model, named as Hugging Face names it (a strategy's tensors as the strategy names them). */
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
  init: ParamInit;
  /**
   * False: the step computes no gradient for it (its gradient buffer is not written) and nothing should update it.
   * The model always sets it; absent (a spec written by hand) means true.
   */
  trainable?: boolean;
  /** Its value is made each pass from other parameters (ModelEditor.deriveParam): it emits gradients, never steps. */
  derived?: boolean;
  /**
   * 'checkpoint': read from the pretrained weights; 'strategy': added by a model modifier, initialised from `init`.
   * The model always sets it; absent means 'checkpoint'.
   */
  source?: 'checkpoint' | 'strategy';
}

export const trains = (p: ParamSpec) => p.trainable !== false;

/**
 * Whether a module hands on a gradient by this parameter: it trains, or the model makes its value each pass from
 * other parameters (ModelEditor.deriveParam), which take the gradient (the parameter itself is never stepped).
 */
export const emits = (p: ParamSpec) => trains(p) || p.derived === true;

export const internalShape = (p: ParamSpec) => (p.transposed ? [p.shape[1], p.shape[0]] : p.shape);
export const sizeOf = (p: ParamSpec) => p.shape.reduce((a, b) => a * b, 1);

/** A parameter as a module holds it: its position in the model's value list, and its spec. */
export interface Param {
  readonly index: number;
  readonly spec: ParamSpec;
}

/** The parameters of a model in declaration order: modules declare theirs as the model is assembled. */
export class ParamTable {
  readonly specs: ParamSpec[] = [];
  private readonly byName = new Map<string, Param>();

  declare(spec: ParamSpec): Param {
    if (this.byName.has(spec.name)) throw new Error(`parameter ${spec.name} is declared twice`);
    const full: ParamSpec = { trainable: true, source: 'checkpoint', ...spec };
    const param = { index: this.specs.length, spec: full };
    this.specs.push(full);
    this.byName.set(spec.name, param);
    return param;
  }

  get(name: string): Param | undefined {
    return this.byName.get(name);
  }

  /** A dense layer's weight ([out, in] in the checkpoint) and bias. */
  dense(name: string, inDim: number, outDim: number, group: ParamGroup, layer?: number) {
    return {
      weight: this.declare({
        name: `${name}.weight`,
        shape: [outDim, inDim],
        transposed: true,
        decay: true,
        group,
        layer,
        init: 'normal',
      }),
      bias: this.declare({
        name: `${name}.bias`,
        shape: [outDim],
        transposed: false,
        decay: false,
        group,
        layer,
        init: 'zeros',
      }),
    };
  }

  /** A LayerNorm's gain and bias. */
  norm(name: string, dim: number, group: ParamGroup, layer?: number) {
    return {
      weight: this.declare({
        name: `${name}.weight`,
        shape: [dim],
        transposed: false,
        decay: false,
        group,
        layer,
        init: 'ones',
      }),
      bias: this.declare({
        name: `${name}.bias`,
        shape: [dim],
        transposed: false,
        decay: false,
        group,
        layer,
        init: 'zeros',
      }),
    };
  }
}
