import type { ModelConfig } from '../config.js';
import { SelfAttention, type KeyValuePrefix } from './attention.js';
import type { InputPrefix } from './embeddings.js';
import type { Assembled, DenseSite } from './families.js';
import type { DerivedParam, Layer } from './module.js';
import type { Param, ParamGroup, ParamInit, ParamSpec } from './param.js';

/** A parameter a modifier adds. Shapes are as saved (a dense weight [out, in] with `transposed`). */
export interface NewParam {
  /** Unique in the model, stable across runs: checkpoints and resume find it by this name. */
  name: string;
  shape: number[];
  init: ParamInit;
  /** Default: false (kept as shaped). */
  transposed?: boolean;
  /** Default: false (AdamW does not decay it). */
  decay?: boolean;
  /** Default: 'encoder'. */
  group?: ParamGroup;
  layer?: number;
  /** Default: true. */
  trainable?: boolean;
}

export type SublayerKind = 'attention' | 'feed-forward';
export type Insertion = 'after' | 'after-norm' | 'parallel';

/**
 * How a modifier changes the model while it is assembled. Parameters it adds come after the model's own, in the
 * order it adds them (modifiers apply in the order given), so checkpoints and resume include them.
 */
export interface ModelEditor {
  readonly config: ModelConfig;
  readonly numLabels: number;
  /** Every parameter declared so far (the model's own first). */
  readonly specs: readonly ParamSpec[];
  /** Every dense layer of the model, in parameter order. */
  readonly denseSites: readonly DenseSite[];
  /** A parameter by name (the model's own or one a modifier added). */
  param(name: string): Param;
  /** Adds a parameter (source 'strategy'): initialised from `init` with the run's seed, never read from a checkpoint. */
  addParam(spec: NewParam): Param;
  /** Sets which of the model's own parameters train (a frozen one gets no gradient); modifiers' own are set at addParam. */
  setTrainable(trains: (spec: ParamSpec) => boolean): void;
  /**
   * Makes `param`'s value each pass from other parameters (`derived`, e.g. a frozen value plus a gated difference):
   * the modules read that value and hand their gradient by it to `derived.backward`; the parameter itself, frozen
   * or not, is never stepped (diff pruning's gated tensors). One derivation per parameter.
   */
  deriveParam(param: Param, derived: DerivedParam): void;
  /** Replaces the layer at each selected dense site (the dense, or an earlier wrapper) with `wrap(inner, site)`. */
  wrapDense(select: (site: DenseSite) => boolean, wrap: (inner: Layer, site: DenseSite) => Layer): void;
  /**
   * Adds a module to a sub-layer of each selected layer (modules/sublayer.ts): 'after' runs on the sub-layer's
   * dropped output z before its residual and LayerNorm (Houlsby); 'after-norm' reads the sub-layer's LayerNorm of
   * z + x, its output added to z (Pfeiffer as AdapterHub applies it); 'parallel' runs on the sub-layer's input x,
   * its output added to z.
   */
  insert(
    at: { sublayer: SublayerKind; placement: Insertion; layers?: readonly number[] },
    build: (layer: number) => Layer,
  ): void;
  /** Gives each selected layer's attention key and value rows every query attends to (prefix tuning). */
  prefixAttention(build: (layer: number) => KeyValuePrefix, layers?: readonly number[]): void;
  /**
   * Counts the sequences' own positions after `by` more (transformers' past_key_values_length, when a prefix is
   * passed as past key values: Embeddings.positionOffset).
   */
  offsetPositions(by: number): void;
  /**
   * Puts rows before every sequence's word embeddings (prompt tuning, PEFT's placement): position and token-type
   * embeddings and the embeddings' LayerNorm apply to them, and the head reads the first of them.
   */
  prependInput(prefix: InputPrefix): void;
  /** Turns off the dropout applied directly to a head layer's input (a method that replaces dropout there: Mixout). */
  noInputDropout(role: 'head-dense' | 'head-out'): void;
  /** Turns off every dropout of the model in training (a method whose reference trains without: Mixout's example). */
  noDropout(): void;
}

/**
 * A change to the model, as plain data: `kind` names its definition and `options` is structured-cloneable, so a
 * worker thread rebuilds the identical modifier with the same definition (defineModifier) from { kind, options }.
 */
export interface ModelModifier<O = unknown> {
  readonly kind: string;
  readonly options: O;
  apply(editor: ModelEditor): void;
}

/** A modifier kind: builds its modifiers from options; `kind` names it for rebuilding in another thread. */
export interface ModifierFactory<O = unknown> {
  (options: O): ModelModifier<O>;
  readonly kind: string;
}

/** A modifier kind: `apply` is a plain function of the editor and the options (no state from the caller's thread). */
export function defineModifier<O>(kind: string, apply: (editor: ModelEditor, options: O) => void): ModifierFactory<O> {
  return Object.assign(
    (options: O): ModelModifier<O> => ({ kind, options, apply: (editor) => apply(editor, options) }),
    { kind },
  );
}

/** A modifier as plain data: its kind and structured-cloneable options. */
export interface ModifierData {
  kind: string;
  options: unknown;
}

/** The plain data that rebuilds these modifiers in another thread. */
export const modifierData = (modifiers: readonly ModelModifier[]): ModifierData[] =>
  modifiers.map(({ kind, options }) => ({ kind, options }));

/** Rebuilds modifiers from their plain data (a worker thread's side of modifierData). */
export type ModifiersFrom = (data: readonly ModifierData[]) => ModelModifier[];

/** A ModifiersFrom over a known set of modifier kinds; an unknown kind is an error naming the known ones. */
export function modifiersFromFactories(factories: readonly ModifierFactory[]): ModifiersFrom {
  const byKind = new Map(factories.map((f) => [f.kind, f]));
  return (data) =>
    data.map(({ kind, options }) => {
      const factory = byKind.get(kind);
      if (!factory)
        throw new Error(`no model modifier of kind '${kind}' (known: ${[...byKind.keys()].join(', ') || 'none'})`);
      return factory(options);
    });
}

/** Applies the modifiers, in order, to an assembled model. */
export function applyModifiers(
  model: Assembled,
  config: ModelConfig,
  numLabels: number,
  modifiers: readonly ModelModifier[],
) {
  const { params, encoder, denseSites } = model;
  const selected = (layers: readonly number[] | undefined) =>
    encoder.layers.map((layer, l) => ({ layer, l })).filter(({ l }) => !layers || layers.includes(l));
  const editor: ModelEditor = {
    config,
    numLabels,
    specs: params.specs,
    denseSites,
    param(name) {
      const p = params.get(name);
      if (!p) throw new Error(`no parameter ${name}`);
      return p;
    },
    addParam: (s) =>
      params.declare({
        name: s.name,
        shape: s.shape,
        init: s.init,
        transposed: s.transposed ?? false,
        decay: s.decay ?? false,
        group: s.group ?? 'encoder',
        layer: s.layer,
        trainable: s.trainable ?? true,
        source: 'strategy',
      }),
    setTrainable(trains) {
      for (const spec of params.specs) if (spec.source === 'checkpoint') spec.trainable = trains(spec);
    },
    deriveParam(param, derived) {
      if (model.derived.has(param.index)) throw new Error(`${param.spec.name} is already derived`);
      param.spec.derived = true;
      model.derived.set(param.index, derived);
    },
    wrapDense(select, wrap) {
      for (const site of denseSites) if (select(site)) site.set(wrap(site.get(), site));
    },
    insert(at, build) {
      for (const { layer, l } of selected(at.layers)) {
        const sublayer = at.sublayer === 'attention' ? layer.attention : layer.feedForward;
        const lists = { after: sublayer.after, 'after-norm': sublayer.afterNorm, parallel: sublayer.parallel };
        lists[at.placement].push(build(l));
      }
    },
    prefixAttention(build, layers) {
      for (const { layer, l } of selected(layers)) {
        const attention = layer.attention.transform;
        if (!(attention instanceof SelfAttention))
          throw new Error(`layer ${l}'s attention is wrapped; give it a prefix before wrapping it`);
        if (attention.prefix) throw new Error(`layer ${l}'s attention already has a key/value prefix`);
        attention.prefix = build(l);
      }
    },
    offsetPositions(by) {
      model.embeddings.positionOffset += by;
    },
    prependInput(prefix) {
      if (model.embeddings.prompt) throw new Error('the input already has a prompt');
      model.embeddings.prompt = prefix;
    },
    noInputDropout(role) {
      if (role === 'head-out') model.head.dropoutAfter = false;
      else model.head.dropoutBefore = false;
    },
    noDropout() {
      model.dropout = false;
    },
  };
  for (const m of modifiers) m.apply(editor);
}
