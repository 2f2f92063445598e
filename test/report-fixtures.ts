import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

/**
 * Hand-made run directories for the report tests (no training): results.json, metrics.jsonl,
 * recipe.resolved.yaml and mask-stats.json as a finished run writes them.
 */
export interface FakeRun {
  task: string;
  strategy: 'vanilla' | 'child-tuning-f' | 'child-tuning-d';
  seed: number;
  /** The primary metric's final value. */
  score: number;
  model?: string;
  reserve_p?: number;
  lr?: number;
  /** Written as training.optimizer.lr, where a resolved recipe holds it. */
  optimizerLr?: number;
  overrides?: Record<string, unknown>;
  /** results.json's strategy_settings: the overrides that came from sweep.per_strategy. */
  strategySettings?: string[];
  /** results.json's trainable_share. */
  trainable?: number;
  /** results.json's predicted_classes and majority_baseline, as a run since predictions are checked writes them. */
  predicted?: Record<string, number>;
  majority?: number;
  /** results.json's confusion_matrix over the predicted classes' names (gold rows, predicted columns). */
  confusion?: number[][];
  metric?: string;
  epochs?: number;
  stepsPerEpoch?: number;
}

/** A deterministic noise in [-1, 1) from integers. */
const noise = (...xs: number[]) => {
  let h = 2166136261;
  for (const x of xs) h = Math.imul(h ^ (x + 0x9e3779b9), 16777619) >>> 0;
  return (h >>> 8) / 2 ** 23 - 1;
};

export function fakeRun(dir: string, r: FakeRun): string {
  fs.mkdirSync(dir, { recursive: true });
  const metric = r.metric ?? 'accuracy';
  const epochs = r.epochs ?? 3,
    perEpoch = r.stepsPerEpoch ?? 40,
    steps = epochs * perEpoch;
  const reserve = r.strategy === 'vanilla' ? null : (r.reserve_p ?? 0.3);
  const model = r.model ?? '/models/bert-tiny';
  const lr = r.lr ?? 2e-5;
  const epochScores = Array.from({ length: epochs }, (_, e) =>
    e === epochs - 1 ? r.score : r.score - 0.04 * (epochs - 1 - e) + 0.01 * noise(r.seed, e),
  );
  const lines: object[] = [];
  const strategyShift = r.strategy === 'vanilla' ? 0 : r.strategy === 'child-tuning-f' ? -0.02 : -0.04;
  for (let step = 5; step <= steps; step += 5) {
    lines.push({
      kind: 'step',
      step,
      epoch: Math.ceil(step / perEpoch),
      loss: 0.3 + strategyShift + 0.42 * Math.exp(-step / 45) + 0.03 * noise(r.seed, step, r.task.length),
      lr,
      grad_norm: 1,
      examples_per_s: 100,
    });
    if (step % perEpoch === 0)
      lines.push({
        kind: 'eval',
        step,
        epoch: step / perEpoch,
        metrics: { [metric]: epochScores[step / perEpoch - 1] },
      });
  }
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  fs.writeFileSync(
    path.join(dir, 'results.json'),
    JSON.stringify(
      {
        trial: 0,
        overrides: r.overrides ?? {},
        ...(r.strategySettings && { strategy_settings: r.strategySettings }),
        task: r.task,
        strategy: r.strategy,
        reserve_p: reserve,
        seed: r.seed,
        backend: 'wasm',
        threads: 2,
        metrics: { [metric]: r.score },
        ...(r.trainable !== undefined && { trainable_share: r.trainable }),
        ...(r.predicted && {
          predicted_classes: r.predicted,
          single_class_prediction: Object.values(r.predicted).filter((n) => n > 0).length === 1,
        }),
        ...(r.confusion && { confusion_matrix: { labels: Object.keys(r.predicted!), matrix: r.confusion } }),
        ...(r.majority !== undefined && {
          majority_baseline: { class: 'not_entailment', metrics: { [metric]: r.majority } },
        }),
        epochs: epochScores.map((s, i) => ({ epoch: i + 1, metrics: { [metric]: s } })),
        best_epoch: epochs,
        steps,
        transfer: {},
      },
      null,
      2,
    ),
  );
  fs.writeFileSync(
    path.join(dir, 'recipe.resolved.yaml'),
    stringify({
      version: 1,
      name: 'fake',
      model: { path: model, max_seq_length: 32 },
      dataset: { task: r.task },
      strategy: { kind: r.strategy, ...(reserve === null ? {} : { reserve_p: reserve }) },
      training: {
        seed: r.seed,
        lr,
        ...(r.optimizerLr !== undefined && { optimizer: { lr: r.optimizerLr } }),
        epochs,
        batch_size: 8,
        log_every: 5,
      },
      evaluation: { batch_size: 64 },
      runtime: { backend: 'auto', output_dir: './runs' },
    }),
  );
  if (r.strategy !== 'vanilla') {
    const layers = ['embeddings', ...Array.from({ length: 4 }, (_, i) => `layer.${i}`), 'pooler', 'classifier'];
    const perLayer = Object.fromEntries(
      layers.map((l, i) => [
        l,
        r.strategy === 'child-tuning-f'
          ? reserve! + 0.005 * noise(r.seed, i)
          : l.startsWith('layer.')
            ? Math.min(1, 0.12 + 0.1 * i + 0.02 * noise(r.seed, i))
            : 1,
      ]),
    );
    const stats: Record<string, unknown> = {
      strategy: r.strategy,
      reserve_p: reserve,
      per_tensor: {},
      per_layer: perLayer,
    };
    if (r.strategy === 'child-tuning-d') {
      const lo = -13 + 0.2 * noise(r.seed, 1),
        hi = -2.5 + 0.2 * noise(r.seed, 2),
        bins = 40;
      const edges = Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
      const counts = edges.slice(0, -1).map((e) => Math.round(4e5 * Math.exp(-(((e + 8.5) / 1.6) ** 2))));
      stats.fisher = {
        threshold: 10 ** (-7.6 + 0.1 * noise(r.seed, 3)),
        ties: 0,
        histogram: { log10_edges: edges, counts, zeros: 120 },
      };
    }
    fs.writeFileSync(path.join(dir, 'mask-stats.json'), JSON.stringify(stats));
  }
  return dir;
}

/**
 * The situation: vanilla, F and D over five seeds on SST-2 and RTE (D's SST-2 seeds run twice, as
 * with two cache states), and two small custom-model runs sharing a seed with the main model.
 */
export function paperLikeRuns(root: string): string {
  const sweep = path.join(root, 'sweep');
  let trial = 0;
  const base = { 'glue/sst-2': 0.84, 'glue/rte': 0.62 } as Record<string, number>;
  const gain = { vanilla: 0, 'child-tuning-f': 0.008, 'child-tuning-d': 0.02 };
  for (const task of ['glue/sst-2', 'glue/rte']) {
    for (const strategy of ['vanilla', 'child-tuning-f', 'child-tuning-d'] as const) {
      for (let seed = 1; seed <= 5; seed++) {
        const score =
          base[task] + gain[strategy] + 0.008 * noise(seed, task.length) + 0.006 * noise(seed, strategy.length);
        fakeRun(path.join(sweep, `trial-${String(trial++).padStart(3, '0')}`), {
          task,
          strategy,
          seed,
          score,
          overrides: { 'strategy.kind': strategy, 'training.seed': seed },
        });
      }
    }
  }
  for (let seed = 1; seed <= 5; seed++) {
    fakeRun(path.join(root, `sst2-d-again-${seed}`), {
      task: 'glue/sst-2',
      strategy: 'child-tuning-d',
      seed,
      score: base['glue/sst-2'] + gain['child-tuning-d'] + 0.012 * noise(seed, 10),
    });
  }
  for (const seed of [1, 2])
    fakeRun(path.join(root, `small-model-${seed}`), {
      task: 'glue/sst-2',
      strategy: 'vanilla',
      seed,
      model: '/models/bert-mini',
      score: 0.8 + 0.01 * seed,
    });
  return root;
}
