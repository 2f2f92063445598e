import type { ModelConfig } from '../engine/config.js';
import type { ModelModifier, ModifierFactory } from '../engine/modules/modifier.js';
import type { UpdateHooks } from '../engine/parallel/hooks.js';
import type { ParamSpec } from '../engine/params.js';
import type { Diagnostic } from '../recipe/diagnostics.js';
import type { Recipe } from '../recipe/types.generated.js';

/**
 * The contract of a strategy: everything the rest of childtune asks of one kind. Each kind is one folder
 * (src/strategies/<kind>/: its schema.json fragment and an index.ts exporting one definition) plus one line in
 * registry.ts, the only place that chooses by kind (src/strategies/README.md).
 */
export type StrategyOptions = Recipe['strategy'];
export type Kind = StrategyOptions['kind'];
export type OptionsOf<K extends Kind> = Extract<StrategyOptions, { kind: K }>;

/** A term added to the task loss: adds its gradient into `grads` and returns its value. */
export type LossTerm = (values: readonly Float32Array[], grads: Float32Array[], step: number) => number;

/** The engine's update hooks plus what strategies beyond vanilla, F and D use (none of those three sets them). */
export interface StrategyHooks extends UpdateHooks {
  lossTerm?: LossTerm;
}

/** A stage the strategy needs before training, as the plan adds it (D: the fisher stage). */
export interface ExtraStage {
  kind: 'fisher';
  /** Exactly what determines the stage's output (what its hash covers). */
  inputs: Record<string, unknown>;
  label: string;
  work: { examples: number; epochs: number; steps: number };
}

/** What the plan knows when it asks for a strategy's extra stages. */
export interface StageContext {
  modelHash: string;
  train: { hash: string; examples: number };
  numLabels: number;
  /** The training seed when the pass initialises a fresh head (the checkpoint has none of the task's shape), else null. */
  headSeed(): number | null;
  runtime: unknown;
}

/** What a strategy is prepared from: the recipe (and its strategy block), the model's parameters and its extra stages' outputs. */
export interface PrepareInput<K extends Kind = Kind> {
  recipe: Recipe;
  options: OptionsOf<K>;
  specs: readonly ParamSpec[];
  /** The fisher stage's child network: one bitset per tensor (undefined outside its scope). */
  childNetwork?: (Uint8Array | undefined)[];
  /** The run's optimizer steps per epoch and in all, where the strategy is prepared for a run (not for a plan). */
  steps?: { perEpoch: number; total: number };
}

/** The training state a strategy may change between optimizer steps (host copies, engine layout, by spec index). */
export interface TrainingState {
  specs: readonly ParamSpec[];
  values: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
}

export interface StrategyDefinition<K extends Kind = Kind, P = unknown> {
  kind: K;
  /** Diagnostics no schema can express (the model, the data); the plan reports them. */
  check?(options: OptionsOf<K>): Diagnostic[];
  stages?(options: OptionsOf<K>, recipe: Recipe, context: StageContext): ExtraStage[];
  /**
   * What it adds to a stage's peak: bytes of the Fisher accumulator and of the mask it keeps, and how many
   * training passes' activations a step holds at once (default 1; R3F's clean and noisy passes: 2).
   */
  memory?(
    options: OptionsOf<K>,
    counts: { total: number; encoder: number },
    stage: 'train' | 'fisher',
  ): { fisher: number; mask: number; activationPasses?: number };
  /**
   * How it changes the model before anything runs (wrapped or inserted modules, added parameters, which of the
   * model's own parameters train), as engine modifiers built from its options; every thread rebuilds them from
   * their plain data through `modifierKinds`, so each factory it uses must be listed there.
   */
  modifiers?(options: OptionsOf<K>): ModelModifier[];
  modifierKinds?: readonly ModifierFactory[];
  /**
   * Whether its update reads the pretrained anchor (a shared copy of the weights as loaded, one more copy of every
   * parameter in memory): the engine keeps one only for kinds that say so.
   */
  anchor?(options: OptionsOf<K>): boolean;
  /** Plain data (structured-cloneable) every worker thread rebuilds the hooks from. */
  prepare(input: PrepareInput<K>): P;
  hooks(prepared: P): StrategyHooks;
  /**
   * The learning rate of optimizer step `step` where the strategy's own steps (`ownStep`) replace the run's schedule
   * for the tensors it trains besides its gates (what the log reports); undefined: the run's.
   */
  learningRate?(prepared: P, step: number): number | undefined;
  /** The optimizer step at whose end `changeAt` runs; undefined: none. */
  changeStep?(prepared: P): number | undefined;
  /**
   * A change the strategy makes to the weights and Adam's moments at the end of optimizer step `changeStep` (diff
   * pruning's magnitude projection); returns whether it changed anything (the run then hands the state back to the
   * threads or the GPU). A pure function of the state, so a resumed run makes the same change at the same step.
   */
  changeAt?(prepared: P, state: TrainingState): boolean;
  /** Tensors whose kept counts are read from their shared bitsets after every update (F's drawn masks). */
  counted?(prepared: P): readonly boolean[];
  /** A tensor's kept fraction when fixed by the strategy (D's bitsets); undefined: counted, or 1. */
  fixedFraction?(prepared: P, index: number, size: number): number | undefined;
  /** Its fields of results.json and mask-stats.json. */
  report(options: OptionsOf<K>): StrategyReport;
  /**
   * How the trained model is saved (run/<trial>/model), required of every kind whose modifiers add parameters
   * (spec.source 'strategy'): the save stage never writes those into model.safetensors as tensors transformers does
   * not know, and refuses to save a model that has them when the kind has no hook. Without the hook the trained
   * values are written as they are (vanilla, F, D, and kinds that only freeze or penalise).
   */
  save?(input: SaveInput<K>): StrategySave;
}

/** What a save hook is given: the trained model, and where its pretrained weights came from. */
export interface SaveInput<K extends Kind = Kind> {
  options: OptionsOf<K>;
  config: ModelConfig;
  specs: readonly ParamSpec[];
  /** The trained values, engine layout (dense weights [in, out]: see ParamSpec.transposed), by spec index. */
  values: readonly Float32Array[];
  /** The pretrained model's directory (PEFT's base_model_name_or_path). */
  modelDir: string;
}

/** What the save stage writes for a strategy (beside config.json and the tokenizer files, always written). */
export interface StrategySave {
  /**
   * model.safetensors: the model's own tensors (source 'checkpoint'), engine layout, by spec index (entries of the
   * strategy's parameters are ignored), e.g. the trained values with the strategy's update folded in (LoRA: W +
   * (alpha/r) B A) so the directory loads as a plain transformers model. null: no model.safetensors (the files
   * below are the saved model, e.g. PEFT's layout).
   */
  weights: readonly Float32Array[] | null;
  /** Further files for the saved model's directory, by file name (PEFT: adapter_config.json, adapter_model.safetensors). */
  files?: Record<string, string | Uint8Array | Iterable<Uint8Array>>;
}

/** A strategy's fields of results.json and mask-stats.json: its kind and reserve_p, plus any of its own. */
export interface StrategyReport {
  results: { strategy: string; reserve_p: number | null } & Record<string, unknown>;
  maskStats: { strategy: string; reserve_p: number } & Record<string, unknown>;
}

/** A definition with its types checked against its own kind; the registry holds them as plain definitions. */
export const defineStrategy = <K extends Kind, P>(d: StrategyDefinition<K, P>) => d as unknown as StrategyDefinition;

/** The fields every kind reports: its kind and reserve_p (null in results.json, 1 in mask-stats.json where it has none). */
export const kindReport = (options: { kind: string; reserve_p?: number }): StrategyReport => ({
  results: { strategy: options.kind, reserve_p: options.reserve_p ?? null },
  maskStats: { strategy: options.kind, reserve_p: options.reserve_p ?? 1 },
});
