import { loadPretrained } from '../../engine/checkpoint.js';
import { ModelError, readModelConfig, type ModelConfig } from '../../engine/config.js';
import { localModelDir } from '../../engine/hub/cache.js';
import type { EncoderClassifier } from '../../engine/model.js';
import { loadTokenizer, type Tokenizer } from '../../engine/tokenizer.js';
import { numLabelsOf } from '../../plan/compiler.js';
import { anchorFor, modifiersFor } from '../../strategies/registry.js';
import { startPool, type RunPool } from '../parallel.js';
import type { StageRunner } from '../walk.js';

/** The load-model stage's output: the pretrained model with its head, its tokenizer, and the worker pool that runs it. */
export interface LoadedModel {
  modelDir: string;
  config: ModelConfig;
  tokenizer: Tokenizer;
  model: EncoderClassifier;
  parallel: RunPool;
}

export const loadModelRunner: StageRunner<LoadedModel> = {
  async run(_stage, _deps, ctx) {
    const { recipe, report } = ctx;
    const modelDir = localModelDir(recipe.model.path);
    const config = readModelConfig(modelDir, recipe.model.family);
    const tokenizer = loadTokenizer(modelDir, { lowerCase: config.doLowerCase });
    if (tokenizer.vocabSize > config.vocabSize)
      throw new ModelError(
        modelDir,
        `the tokenizer has ${tokenizer.vocabSize} tokens but config.json's vocab_size is ${config.vocabSize}`,
        'The vocabulary does not belong to this checkpoint.',
      );
    const { model, notes } = loadPretrained(modelDir, {
      family: recipe.model.family,
      numLabels: numLabelsOf(recipe.dataset),
      seed: recipe.training.seed,
      modifiers: modifiersFor(recipe.strategy),
    });
    ctx.onClose(() => model.dispose());
    for (const n of notes) report.log(`model: ${n}`);
    const o = recipe.training.optimizer;
    const parallel = await startPool(model, {
      threads: ctx.runtime.threads,
      backend: ctx.runtime.backend,
      kernel: ctx.kernels?.kernel,
      adam: { lr: o.lr, betas: o.betas as [number, number], eps: o.eps, weightDecay: o.weight_decay },
      anchor: anchorFor(recipe.strategy),
    });
    ctx.onClose(() => parallel.close());
    if (ctx.runtime.backend !== 'webgpu') report.log(`threads: ${ctx.runtime.threads}`);
    return { modelDir, config, tokenizer, model, parallel };
  },
};
