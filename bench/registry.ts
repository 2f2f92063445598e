/** The registry child (`--registry`): every registered strategy's step time against vanilla's. */
import fs from 'node:fs';
import path from 'node:path';
import { selectBackend } from '../src/engine/backend.js';
import { selectKernel } from '../src/engine/native.js';
import { clipCoefficient } from '../src/engine/optimizer.js';
import { sizeOf, trains } from '../src/engine/params.js';
import { Rng, streamSeed } from '../src/engine/rng.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { DataParallel, threadsFor } from '../src/run/parallel.js';
import { anchorFor, modifiersFor, STRATEGIES, strategyFor } from '../src/strategies/registry.js';
import { productKernel } from './cpu-step.js';
import { median, medianInterval, modelFor, randomBatch, ROOT, type Row, runMode, type Shape } from './shapes.js';

/** A registry-driven job: every registered strategy's step time against vanilla's, each on its own model and pool. */
interface RegistryJob {
  shape: Shape;
  steps: number;
  warmup: number;
}

/** A kind's options as a recipe gets them by default: its fragment's defaults, and its examples where it needs a value (reserve_p). */
function defaultOptions(kind: string): Recipe['strategy'] {
  const file = path.join(ROOT, 'src', 'strategies', kind, 'schema.json');
  const properties = JSON.parse(fs.readFileSync(file, 'utf8')).properties as Record<
    string,
    { default?: unknown; examples?: unknown[] }
  >;
  const options: Record<string, unknown> = { kind };
  for (const [key, p] of Object.entries(properties)) {
    if (key === 'kind') continue;
    if (p.default !== undefined) options[key] = p.default;
    else if (key === 'reserve_p') options[key] = p.examples?.[0];
  }
  return options as unknown as Recipe['strategy'];
}

/**
 * Every registered strategy (its default options; D with a random child network of the default reserve_p) against
 * vanilla: its model with its modifiers and a pool keeping the anchor when it asks, beside one vanilla pool kept for
 * the whole run; after warm-up, steps alternate between the two (each round starting with the other), and the
 * overhead is the median of the per-round ratios, so drift of the machine hits both sides alike.
 */
export async function registryChild(job: RegistryJob) {
  const backend = await selectBackend('auto');
  const threads = threadsFor(0, backend.name);
  const kernel = productKernel();
  selectKernel(kernel);
  const rng = new Rng(1);
  const batches = Array.from({ length: 4 }, () => randomBatch(rng));
  const adam = { lr: 1e-4, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 };
  const poolFor = async (options: Recipe['strategy']) => {
    const model = modelFor(job.shape, modifiersFor(options));
    const dp = await DataParallel.start(model, {
      threads,
      backend: backend.name,
      kernel,
      adam,
      anchor: anchorFor(options),
    });
    const masks = model.specs.map((s) =>
      s.group === 'encoder' ? new Uint8Array(Math.ceil(sizeOf(s) / 8)).map(() => rng.int(256)) : undefined,
    );
    const recipe = { strategy: options, training: { seed: 1 } } as unknown as Recipe;
    const strategy = strategyFor(recipe, model.specs, masks);
    await dp.setStrategy(strategy);
    let step = 0;
    const oneStep = async () => {
      const t0 = performance.now();
      // A step seed as training passes one: the modules' per-step draws (Mixout's masks, diff pruning's gates) and a
      // consistency term's second pass (R3F) run only with it.
      const { norm } = await dp.gradients(batches[step % batches.length], step, streamSeed(1, step));
      await dp.update(1e-4, clipCoefficient(norm, 1), strategy);
      step++;
      return performance.now() - t0;
    };
    return { model, dp, oneStep };
  };
  const base = await poolFor(defaultOptions('vanilla'));
  const vanillaTimes: number[] = [];
  const rows: {
    kind: string;
    step_ms: number;
    overhead: number;
    overhead_interval: [number, number];
    trainable_share: number;
    options: Recipe['strategy'];
  }[] = [];
  for (const kind of STRATEGIES.map((d) => d.kind).filter((k) => k !== 'vanilla')) {
    const options = defaultOptions(kind);
    const other = await poolFor(options);
    for (let i = 0; i < job.warmup; i++) {
      await base.oneStep();
      await other.oneStep();
    }
    const times: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < job.steps; round++) {
      let v: number;
      let t: number;
      if (round % 2 === 0) {
        v = await base.oneStep();
        t = await other.oneStep();
      } else {
        t = await other.oneStep();
        v = await base.oneStep();
      }
      vanillaTimes.push(v);
      times.push(t);
      ratios.push(t / v - 1);
    }
    await other.dp.close();
    const specs = other.model.specs;
    const total = specs.reduce((a, s) => a + sizeOf(s), 0);
    const trainable = specs.reduce((a, s) => a + (trains(s) ? sizeOf(s) : 0), 0);
    rows.push({
      kind,
      step_ms: median(times),
      overhead: median(ratios),
      overhead_interval: medianInterval(ratios),
      trainable_share: trainable / total,
      options,
    });
  }
  await base.dp.close();
  return { threads, vanilla_ms: median(vanillaTimes), strategies: rows };
}

export function runRegistry(job: RegistryJob): Row {
  return runMode('--registry', `registry ${job.shape}`, job);
}
