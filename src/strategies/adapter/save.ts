import type { Family } from '../../engine/config.js';
import { encodeSafetensors } from '../../engine/safetensors.js';
import type { SaveInput, StrategySave } from '../definition.js';
import { pyFloat, pythonJson } from '../python-json.js';
import { namedTensors, STRATEGY_CONFIG, strategyJson } from '../save-apart.js';
import { adapterModifier, adapterSublayers, isParallel, type AdapterSettings } from './modifier.js';
import { adapterSettings } from './settings.js';

/** The adapter's name in AdapterHub's files (model.load_adapter loads it under this name). */
export const ADAPTER_NAME = 'default';
/** AdapterHub's save_adapter files, in their own folder (a top-level adapter_config.json is PEFT's to transformers). */
export const ADAPTERHUB_DIR = 'adapter';
export const ADAPTERHUB_CONFIG = `${ADAPTERHUB_DIR}/adapter_config.json`;
/** AdapterHub's SAFE_WEIGHTS_NAME: model.load_adapter(dir, use_safetensors=True) reads it. */
export const ADAPTERHUB_WEIGHTS = `${ADAPTERHUB_DIR}/adapter.safetensors`;
/** The adapters release whose saved layout this follows (its config's version field). */
export const ADAPTERS_VERSION = '1.2.0';

const ARCHITECTURES: Record<Family, string> = {
  bert: 'BertForSequenceClassification',
  roberta: 'RobertaForSequenceClassification',
  electra: 'ElectraForSequenceClassification',
};

/**
 * An adapter parameter's name in AdapterHub's state dict: adapter.layer.<l>.<attention|output>.<rest> as
 * <family>.encoder.layer.<l>.<attention.output|output>.adapters.<name>.<adapter_down.0|adapter_up|scaling>...
 */
export function adapterHubName(family: Family, name: string): string {
  const m = /^adapter\.layer\.(\d+)\.(attention|output)\.(down|up|scaling)(\.weight|\.bias)?$/.exec(name);
  if (!m) throw new Error(`${name} is not an adapter parameter`);
  const [, layer, site, part, suffix] = m;
  const module = { down: 'adapter_down.0', up: 'adapter_up', scaling: 'scaling' }[part];
  const at = site === 'attention' ? 'attention.output' : 'output';
  return `${family}.encoder.layer.${layer}.${at}.adapters.${ADAPTER_NAME}.${module}${suffix ?? ''}`;
}

/** BnConfig.to_dict() for these settings: every field of AdapterHub's bottleneck config. */
export function bnConfig(s: AdapterSettings, hidden: number): Record<string, unknown> {
  const parallel = isParallel(s.placement);
  return {
    mh_adapter: adapterSublayers(s.placement).includes('attention'),
    output_adapter: true,
    // AdapterHub sizes the bottleneck as int(hidden // reduction_factor); a given bottleneck is hidden / it.
    reduction_factor: s.bottleneck === null ? s.reductionFactor : hidden / s.bottleneck,
    non_linearity: s.nonlinearity,
    original_ln_before: s.originalLnBefore,
    original_ln_after: true,
    ln_before: false,
    ln_after: false,
    init_weights: s.init,
    init_weights_seed: null,
    is_parallel: parallel,
    scaling: s.scaling === 'learned' ? 'learned' : pyFloat(s.scaling),
    use_gating: false,
    residual_before_ln: true,
    adapter_residual_before_ln: false,
    inv_adapter: null,
    inv_adapter_reduction_factor: null,
    cross_adapter: false,
    leave_out: [],
    dropout: pyFloat(0),
    phm_layer: false,
    phm_dim: 4,
    factorized_phm_W: true,
    shared_W_phm: false,
    shared_phm_rule: true,
    factorized_phm_rule: false,
    phm_c_init: 'normal',
    phm_init_range: pyFloat(0.0001),
    learn_phm: true,
    hypercomplex_nonlinearity: 'glorot-uniform',
    phm_rank: 1,
    phm_bias: true,
    stochastic_depth: pyFloat(0),
  };
}

/** adapter_config.json as AdapterHub's save_adapter writes it (build_full_config). */
export function adapterHubConfig(input: SaveInput<'adapter'>): Record<string, unknown> {
  const c = input.config;
  return {
    config: bnConfig(adapterSettings(input.options), c.hiddenSize),
    hidden_size: c.hiddenSize,
    model_class: ARCHITECTURES[c.family],
    model_name: input.modelDir,
    model_type: c.family,
    name: ADAPTER_NAME,
    version: `adapters.${ADAPTERS_VERSION}`,
  };
}

/**
 * Saves the adapters as AdapterHub's save_adapter does, in adapter/ (adapter_config.json, adapter.safetensors:
 * model.load_adapter(dir + '/adapter', use_safetensors=True) after adapters.init(model)); model.safetensors keeps
 * the pretrained weights with the trained head (and LayerNorms), which AdapterHub's adapter files do not hold.
 * strategy.json says how childtune's loader applies them.
 */
export function saveAdapter(input: SaveInput<'adapter'>): StrategySave {
  const family = input.config.family;
  const { tensors, where } = namedTensors(input, ADAPTERHUB_WEIGHTS, (s) =>
    s.source === 'strategy' ? adapterHubName(family, s.name) : null,
  );
  return {
    weights: input.values,
    files: {
      [ADAPTERHUB_CONFIG]: pythonJson(adapterHubConfig(input)),
      [ADAPTERHUB_WEIGHTS]: encodeSafetensors(tensors),
      [STRATEGY_CONFIG]: strategyJson('adapter', [adapterModifier(adapterSettings(input.options))], null, where),
    },
  };
}
