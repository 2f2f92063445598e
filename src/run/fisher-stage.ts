import type { EncoderClassifier } from '../engine/model.js';
import { sizeOf } from '../engine/params.js';
import { resolvedFisher } from '../plan/compiler.js';
import { hashInputs } from '../plan/hash.js';
import type { StageRuntime } from '../plan/runtime.js';
import type { Stage } from '../plan/stages.js';
import type { Recipe } from '../recipe/types.generated.js';
import { bitsetBytes } from '../engine/bitset.js';
import { accumulateFisher, fisherHistogram, perLayer, selectChild, type FisherStats } from '../strategies/fisher.js';
import { childTuningD } from '../strategies/child-tuning-d/index.js';
import { childTuningOf, composedFisher } from '../strategies/compose.js';
import { fisherScope } from '../strategies/registry.js';
import type { PreparedSplit } from './data.js';
import { RunError } from './errors.js';
import { checkInterrupt } from './interrupt.js';
import type { RunPool } from './parallel.js';
import type { LoadedModel } from './stages/load-model.js';
import type { StageRunner } from './walk.js';

export interface ChildNetwork {
  masks: (Uint8Array | undefined)[];
  stats: FisherStats;
  /** The cache's form: each in-scope tensor's bitset in engine layout, concatenated. */
  packed: Uint8Array;
  hash: string;
  cached: boolean;
}

/**
 * The cache key of a fisher stage as it actually runs: the plan's inputs with the backend and thread count
 * this process resolved (the plan predicts them; when the prediction was wrong, the key says what ran).
 */
export const fisherKey = (stage: Stage, runtime: StageRuntime) => hashInputs('fisher', { ...stage.inputs, runtime });

/**
 * Child-Tuning-D's child network, computed from the model as loaded (the pretrained weights and the seeded
 * fresh head: no checkpoint is restored before this stage) or read back from the stage cache by the walk.
 */
export const fisherRunner: StageRunner<ChildNetwork> = {
  async run(stage, [loaded, train], ctx) {
    const { model, parallel } = loaded as LoadedModel;
    const bar = ctx.report.stage('fisher', stage.work?.steps ?? 1);
    const computed = await computeFisher(parallel, model, ctx.recipe, train as PreparedSplit, (done) => {
      bar.tick(done);
      checkInterrupt('fisher');
    });
    bar.end();
    const st = computed.stats;
    ctx.report.log(
      `fisher: ${st.passes} passes over ${st.examples} examples; kept ${st.kept} of ${st.in_scope} (threshold ${st.threshold.toExponential(3)})`,
    );
    return { ...computed, packed: packMasks(computed.masks), hash: fisherKey(stage, ctx.runtime), cached: false };
  },
  cache: {
    key: (stage, ctx) => fisherKey(stage, ctx.runtime),
    store: (c) => ({ 'mask.bin': c.packed, 'stats.json': JSON.stringify(c.stats, null, 2) }),
    // Every tensor's bitset at most, and stats.json: its histogram and a few numbers per tensor.
    bytes: (_, [loaded]) => {
      const { specs } = (loaded as LoadedModel).model;
      return specs.reduce((a, s) => a + bitsetBytes(sizeOf(s)), 0) + (64 << 10) + 1024 * specs.length;
    },
    load(files, stage, [loaded], ctx) {
      const { model } = loaded as LoadedModel;
      const stats: FisherStats = JSON.parse(files['stats.json'].toString('utf8'));
      const packed = new Uint8Array(files['mask.bin']);
      return {
        stats,
        packed,
        masks: unpackMasks(
          packed,
          model.specs.map((s) => (stats.per_tensor[s.name] !== undefined ? sizeOf(s) : 0)),
        ),
        hash: fisherKey(stage, ctx.runtime),
        cached: true,
      };
    },
    reused: 'reusing its mask',
  },
};

/** The fisher pass: accumulate, select the child network, and describe it. */
async function computeFisher(
  parallel: RunPool,
  model: EncoderClassifier,
  recipe: Recipe,
  train: PreparedSplit,
  onBatch: (done: number) => void,
): Promise<{ masks: (Uint8Array | undefined)[]; stats: FisherStats }> {
  // D's own, or D inside another strategy's trainable set (strategy.child_tuning) on the model it modified.
  const inside = childTuningOf(recipe.strategy);
  const settings = inside ? composedFisher(recipe, inside) : resolvedFisher(recipe);
  const reserveP = inside ? inside.reserve_p : recipe.strategy.reserve_p!;
  const scoped = fisherScope(recipe, model.specs, settings.scope);
  const acc = await accumulateFisher(parallel, model.specs, train, settings, recipe.training.dropout, onBatch, scoped);
  const sel = selectChild(model, acc.fisher, reserveP, scoped);
  const fractions = childTuningD(sel.masks, false).keptFractions(model.specs);
  const perTensor = Object.fromEntries(Object.entries(fractions).filter(([name]) => sel.masks[model.indexOf(name)]));
  return {
    masks: sel.masks,
    stats: {
      estimator: settings.estimator,
      reserve_p: reserveP,
      examples: acc.examples,
      passes: acc.passes,
      in_scope: sel.inScope,
      kept: sel.kept,
      threshold: sel.threshold,
      ties: sel.ties,
      per_tensor: perTensor,
      per_layer: perLayer(model, fractions),
      histogram: fisherHistogram(acc.fisher.filter((f) => f.length)),
    },
  };
}

function packMasks(masks: (Uint8Array | undefined)[]): Uint8Array {
  const total = masks.reduce((a, m) => a + (m?.length ?? 0), 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const m of masks)
    if (m) {
      out.set(m, at);
      at += m.length;
    }
  return out;
}

function unpackMasks(buf: Uint8Array, sizes: number[]): (Uint8Array | undefined)[] {
  let at = 0;
  const out = sizes.map((n) => {
    if (!n) return undefined;
    const bytes = bitsetBytes(n);
    const m = Uint8Array.from(buf.subarray(at, at + bytes));
    at += bytes;
    return m;
  });
  if (at !== buf.length)
    throw new RunError(
      'cached fisher mask does not match the model',
      'Delete the cache directory entry and run again.',
      'fisher',
    );
  return out;
}
