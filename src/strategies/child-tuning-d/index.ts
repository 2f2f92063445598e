import { popcount } from '../../engine/bitset.js';
import { defineStrategy, kindReport, type StrategyHooks } from '../definition.js';
import { Strategy } from '../strategy.js';
import { resolvedFisher } from './fisher-settings.js';

/** What D is prepared as: the fisher stage's child network, one bitset per in-scope tensor. */
export interface PreparedD {
  masks: (Uint8Array | undefined)[];
  maskWeightDecay: boolean;
}

/**
 * Child-Tuning-D: a fixed bitset per in-scope tensor, never rescaled. The bitsets are copied once into the
 * tensors' shared bitsets, where the multiply by the bit runs as F's apply pass with scale 1 (wasm where the
 * tensor has an arena), bit-identical to multiplying in JavaScript.
 */
function hooks(d: PreparedD): StrategyHooks {
  return {
    kind: 'child-tuning-d',
    fixedBits: d.masks,
    transform: {
      apply(index, grad, lo, hi, _step, passes, bits) {
        const own = d.masks[index];
        if (own) passes.fapply(grad, bits ?? own, lo, hi, 1);
        return hi - lo;
      },
      device: (index) => (d.masks[index] ? [{ kind: 'mask', scale: 1 }] : []),
    },
    decayMask: d.maskWeightDecay ? (index) => d.masks[index] : undefined,
  };
}

export const childTuningDDefinition = defineStrategy({
  kind: 'child-tuning-d',
  stages: (options, recipe, c) => {
    const settings = resolvedFisher(recipe);
    const examples = Math.min(c.train.examples, settings.max_samples ?? Infinity);
    // Everything the pass reads: the pretrained weights, the data, the settings, the training seed when it
    // initialises the head, and the backend and thread count (dropout streams per shard and the order of the
    // gradient sum depend on them).
    return [
      {
        kind: 'fisher',
        inputs: {
          model: c.modelHash,
          data: c.train.hash,
          fisher: settings,
          reserve_p: options.reserve_p,
          num_labels: c.numLabels,
          dropout: recipe.training.dropout,
          head_seed: c.headSeed(),
          runtime: c.runtime,
        },
        label: `${settings.estimator} estimator, keep ${options.reserve_p}`,
        work: {
          examples,
          epochs: 1,
          steps: settings.estimator === 'per-example' ? examples : Math.ceil(examples / settings.batch_size),
        },
      },
    ];
  },
  memory: (options, counts, stage) => {
    const inScope = options.fisher?.scope === 'all' ? counts.total : counts.encoder;
    // The accumulator, plus the copy selectChild gathers the scores into and selects on (1.13 GiB at BERT-large).
    return { fisher: stage === 'fisher' ? 2 * inScope * 4 : 0, mask: Math.ceil(inScope / 8) };
  },
  prepare: ({ options, childNetwork }) => {
    if (!childNetwork) throw new Error("child-tuning-d is prepared from the fisher stage's child network");
    return { masks: childNetwork, maskWeightDecay: options.mask_weight_decay };
  },
  hooks,
  fixedFraction: (d, index, size) => {
    const bits = d.masks[index];
    return bits ? popcount(bits, size) / size : 1;
  },
  report: kindReport,
});

export const childTuningD = (masks: (Uint8Array | undefined)[], maskWeightDecay: boolean) =>
  new Strategy(childTuningDDefinition, { masks, maskWeightDecay });
