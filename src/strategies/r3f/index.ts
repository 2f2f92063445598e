import { defineStrategy, kindReport } from '../definition.js';
import { STREAMS } from '../strategy.js';

/** What R3F is prepared as: the engine's consistency term (model.ts), its noise from STREAMS.r3fNoise. */
interface PreparedR3F {
  weight: number;
  noise: 'uniform' | 'normal';
  sigma: number;
  noisyWordGradient: boolean;
}

/**
 * R3F (Aghajanyan et al., 2021, as fairseq's examples/rxf sentence_prediction_r3f.py): the engine's consistency
 * term, a second pass of each batch with noised word embeddings and lambda times the symmetric KL between the
 * clean and noisy outputs, its gradient through both passes, but not into the word-embedding table through the
 * noisy one (fairseq adds the noise to detached embeddings) unless noisy_embeddings_gradient asks for it. The same
 * term runs on a GPU (webgpu: model.stepOnDevice). Regression uses the squared difference of the scores. At lambda
 * 0 no second pass runs.
 */
export const r3fDefinition = defineStrategy({
  kind: 'r3f',
  // The clean pass's activations are still held while the noisy pass runs.
  memory: (o) => ({ fisher: 0, mask: 0, activationPasses: o.lambda > 0 ? 2 : 1 }),
  prepare: ({ options }): PreparedR3F => ({
    weight: options.lambda,
    noise: options.noise,
    sigma: options.sigma,
    noisyWordGradient: options.noisy_embeddings_gradient,
  }),
  hooks: (r: PreparedR3F) => ({
    kind: 'r3f',
    consistency: r.weight > 0 ? { ...r, stream: STREAMS.r3fNoise } : undefined,
  }),
  report: (o) => {
    const r = kindReport(o);
    const own = {
      r3f_lambda: o.lambda,
      r3f_noise: o.noise,
      r3f_sigma: o.sigma,
      r3f_noisy_embeddings_gradient: o.noisy_embeddings_gradient,
    };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
});
