import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { selectBackend } from '../src/engine/backend.js';
import { bitsetBytes } from '../src/engine/bitset.js';
import { loadPretrained } from '../src/engine/checkpoint.js';
import type { Batch, StepExtras } from '../src/engine/model.js';
import { trains } from '../src/engine/modules/param.js';
import { adamwStep, jsPasses } from '../src/engine/optimizer.js';
import { updateSegment } from '../src/engine/parallel/shard.js';
import { sizeOf, type ParamSpec } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import { readSafetensors, type TensorInfo } from '../src/engine/safetensors.js';
import type { Recipe } from '../src/recipe/types.generated.js';
import { DataParallel } from '../src/run/parallel.js';
import { resolvedFisher } from '../src/strategies/child-tuning-d/fisher-settings.js';
import { accumulateFisher, selectChild } from '../src/strategies/fisher.js';
import { anchorFor, modifiersFor, strategyFor } from '../src/strategies/registry.js';
import { DELTA } from '../src/strategies/diff-pruning/gated-diff.js';
import { REPO } from './helpers.js';

/**
 * Parity with the references, not with ourselves (issue 27 item 6): per strategy kind, three AdamW steps on a
 * BERT-tiny with dropout off against test/fixtures/reference-parity, which make_reference.py computed once in
 * float64 with an independent PyTorch implementation of each kind's reference code (the script names the reference
 * repository, file and commit per kind, and how it reads it). Each kind is one subtest that reports every
 * difference it finds at once: the trainable set and count, the loss of each step, and every trainable tensor after
 * step 3. The fixture's initial values of the kinds' new parameters are written into the model, and its random
 * draws (Child-Tuning-F's masks, Mixout's masks, R3F's noise, diff pruning's gate uniforms) replayed.
 */
const DIR = path.join(REPO, 'test', 'fixtures', 'reference-parity');
const reference = JSON.parse(fs.readFileSync(path.join(DIR, 'reference.json'), 'utf8'));
const tensors = readSafetensors(path.join(DIR, 'tensors.safetensors'));
const TOLERANCE = 1e-4;

interface KindFixture {
  options: Record<string, unknown>;
  trainable: string[];
  trainable_count: number;
  losses: number[];
  init: string[];
  draws: string[];
}

const batch = (): Batch => {
  const b = reference.batch;
  return {
    batch: b.input_ids.length,
    seq: b.input_ids[0].length,
    inputIds: Int32Array.from(b.input_ids.flat()),
    tokenTypeIds: Int32Array.from(b.token_type_ids.flat()),
    attentionMask: Float32Array.from(b.attention_mask.flat()),
    labels: Float32Array.from(b.labels),
  };
};

/** The strategy options a recipe would hold: the kind's schema defaults under the fixture's options. */
function withDefaults(options: Record<string, unknown>): Recipe['strategy'] {
  const schema = JSON.parse(
    fs.readFileSync(path.join(REPO, 'src', 'strategies', options.kind as string, 'schema.json'), 'utf8'),
  );
  const defaults = Object.fromEntries(
    Object.entries((schema.properties ?? {}) as Record<string, { default?: unknown }>)
      .filter(([, p]) => p.default !== undefined)
      .map(([k, p]) => [k, structuredClone(p.default)]),
  );
  return { ...defaults, ...options } as unknown as Recipe['strategy'];
}

/** A dense weight between the checkpoint's [out, in] and the engine's [in, out] (other tensors as they are). */
function relayout(spec: ParamSpec, values: Float32Array, to: 'engine' | 'checkpoint'): Float32Array {
  if (!spec.transposed) return values;
  const [out, inDim] = spec.shape;
  const t = new Float32Array(values.length);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inDim; i++)
      if (to === 'engine') t[i * out + o] = values[o * inDim + i];
      else t[o * inDim + i] = values[i * out + o];
  return t;
}

/**
 * A generator that hands out recorded draws in place of its own: `next` the recorded uniforms in order (R3F's noise
 * is (2 u - 1) sigma), `nextU32` and `u32s` the same uniforms as 32-bit integers (diff pruning's gates read u from them), and
 * `dropoutMask` a recorded keep mask scaled by 1 / (1 - rate): one value per input feature, repeated over a dense
 * weight's outputs when the whole weight's mask is asked for in the engine's [in, out] layout (Mixout). So the test
 * checks Mixout's mixing and gradient given the reference's masks; how the masks are drawn (one per input) it cannot
 * see.
 */
class RecordedDraws extends Rng {
  private at = 0;

  constructor(
    private readonly values: Float32Array,
    private readonly what: string,
  ) {
    super(1);
  }

  override next(): number {
    if (this.at >= this.values.length) throw new Error(`${this.what}: more draws asked for than the reference made`);
    return this.values[this.at++];
  }

  override nextU32(): number {
    return Math.min(4294967295, Math.max(0, Math.round(this.next() * 4294967296 - 0.5)));
  }

  override u32s(n: number): Uint32Array {
    return Uint32Array.from({ length: n }, () => this.nextU32());
  }

  override dropoutMask(size: number, rate: number): Float32Array {
    const n = this.values.length;
    if (size % n)
      throw new Error(`${this.what}: a mask of ${size} elements asked for, the reference drew ${n} (one per input)`);
    const out = new Float32Array(size);
    const per = size / n;
    for (let i = 0; i < size; i++) out[i] = this.values[Math.floor(i / per)] / (1 - rate);
    return out;
  }
}

const tensor = (key: string): TensorInfo => {
  const t = tensors.get(key);
  if (!t) throw new Error(`the fixture has no tensor ${key}`);
  return t;
};

/**
 * Diff pruning's gate uniforms for one gated tensor as childtune draws them from the tensor's stream: every
 * element's (engine layout, element order) then the tensor's own. The reference recorded them per tensor it gates,
 * `<param>.u` (its layout) and `<param>.param_u`, and drew the tensor's first; which comes first in a stream does
 * not matter, each uniform reaching the same gate does.
 */
function gateDraws(spec: ParamSpec, recorded: (name: string) => TensorInfo | undefined): Float32Array | undefined {
  const base = spec.name.endsWith(DELTA) ? spec.name.slice(0, -DELTA.length) : undefined;
  const [u, tensorU] = base ? [recorded(`${base}.u`), recorded(`${base}.param_u`)] : [];
  if (!u || !tensorU) return undefined;
  const out = new Float32Array(u.data.length + tensorU.data.length);
  out.set(relayout(spec, u.data, 'engine'));
  out.set(tensorU.data, u.data.length);
  return out;
}

const listed = (items: string[]) =>
  items.length > 8 ? `${items.slice(0, 8).join(', ')} and ${items.length - 8} more` : items.join(', ');

/**
 * Child-Tuning-D's child network as its fisher stage computes it (accumulateFisher on a one-thread pool, then
 * selectChild) from the reference's training data, the fixture's batch; also how many elements differ from the
 * reference's mask.
 */
async function childNetwork(recipe: Recipe, found: string[]): Promise<(Uint8Array | undefined)[]> {
  const { model } = loadPretrained(DIR, { numLabels: 2, seed: 1 });
  const s = reference.adamw;
  const pool = await DataParallel.start(model, {
    threads: 1,
    backend: 'wasm',
    adam: { lr: s.lr, betas: s.betas, eps: s.eps, weightDecay: s.weight_decay },
  });
  const b = reference.batch;
  const encodings = (b.input_ids as number[][]).map((ids, i) => {
    const n = (b.attention_mask[i] as number[]).filter(Boolean).length;
    return {
      inputIds: ids.slice(0, n),
      tokenTypeIds: b.token_type_ids[i].slice(0, n),
      attentionMask: ids.slice(0, n).map(() => 1),
    };
  });
  try {
    const settings = resolvedFisher(recipe);
    const { fisher } = await accumulateFisher(
      pool,
      model.specs,
      { encodings: encodings as never, labels: b.labels },
      settings,
      false,
    );
    const { masks } = selectChild(model, fisher, (recipe.strategy as { reserve_p: number }).reserve_p, settings.scope);
    let differ = 0;
    model.specs.forEach((spec, i) => {
      const want = tensors.get(`child-tuning-d/mask/${spec.name}`);
      const bits = masks[i];
      if (!want && !bits) return;
      if (!want || !bits) {
        found.push(`${spec.name}: scored for the child network ${bits ? 'here only' : 'in the reference only'}`);
        return;
      }
      const mine = relayout(
        spec,
        Float32Array.from({ length: want.data.length }, (_, j) => (bits[j >> 3] >> (j & 7)) & 1),
        'checkpoint',
      );
      mine.forEach((k, j) => (differ += k === want.data[j] ? 0 : 1));
    });
    if (differ) found.push(`the child network differs from the reference's in ${differ} elements`);
    return masks;
  } finally {
    await pool.close();
    model.dispose();
  }
}

/** Three steps of `kind` as a run takes them (ShardExecutor and updateSegment on one thread); every difference found. */
async function differences(kind: string): Promise<string[]> {
  const fx = reference.kinds[kind] as KindFixture;
  const found: string[] = [];
  const options = withDefaults(
    kind === 'child-tuning-f' ? { ...fx.options, f_masks: { replay: 'the fixture' } } : fx.options,
  );
  const { model } = loadPretrained(DIR, { numLabels: 2, seed: 1, modifiers: modifiersFor(options) });
  const { specs, values } = model;
  const byName = new Map(specs.map((s, i) => [s.name, i]));
  for (const name of fx.init) {
    const i = byName.get(name);
    if (i === undefined) {
      found.push(`no parameter ${name} to set to the reference's initial value`);
      continue;
    }
    const t = tensor(`${kind}/init/${name}`);
    if (sizeOf(specs[i]) !== t.data.length) {
      found.push(`${name}: [${specs[i].shape}] here, [${t.shape}] in the reference`);
      continue;
    }
    values[i].set(relayout(specs[i], t.data, 'engine'));
  }
  model.markDirty();
  const recipe = { strategy: options, training: { seed: 1 } } as unknown as Recipe;
  const strategy = strategyFor(
    recipe,
    specs,
    options.kind === 'child-tuning-d' ? await childNetwork(recipe, found) : undefined,
  );
  const hooks = strategy.spec;
  const trained = specs.map((s, i) => trains(s) && (!hooks.trains || hooks.trains[i]));

  const ours = specs.filter((_, i) => trained[i]).map((s) => s.name);
  const missing = fx.trainable.filter((n) => !ours.includes(n));
  const extra = ours.filter((n) => !fx.trainable.includes(n));
  if (missing.length) found.push(`trainable in the reference only: ${listed(missing)}`);
  if (extra.length) found.push(`trainable here only: ${listed(extra)}`);
  const count = specs.reduce((a, s, i) => a + (trained[i] ? sizeOf(s) : 0), 0);
  if (count !== fx.trainable_count) found.push(`trainable count ${count}, the reference's ${fx.trainable_count}`);

  const anchor = anchorFor(options) ? values.map((v) => Float32Array.from(v)) : undefined;
  const grads = values.map((v) => new Float32Array(v.length));
  const state = {
    values,
    grads: [grads],
    m: values.map((v) => new Float32Array(v.length)),
    v: values.map((v) => new Float32Array(v.length)),
    anchor,
    bits: values.map((v) => new Uint8Array(bitsetBytes(v.length))),
  };
  // Fixed bitsets (D's child network) are copied into the shared ones once, as each thread does (ShardExecutor).
  hooks.fixedBits?.forEach((bits, i) => bits && state.bits[i].set(bits));
  const s = reference.adamw;
  const settings = { lr: s.lr, betas: s.betas, eps: s.eps, weightDecay: s.weight_decay };
  for (let step = 1; step <= reference.steps; step++) {
    const recorded = (name: string) => tensors.get(`${kind}/draw/${step}/${name}`);
    const extras: StepExtras = {
      seed: step,
      draws: (_stream, index) => {
        const name = specs[index].name;
        const t = recorded(name)?.data ?? gateDraws(specs[index], recorded);
        if (!t) throw new Error(`step ${step}: ${name} draws, and the reference recorded no draws for it`);
        return new RecordedDraws(t, `step ${step}, ${name}`);
      },
    };
    if (hooks.consistency)
      extras.consistency = {
        term: hooks.consistency,
        noise: new RecordedDraws(tensor(`${kind}/draw/${step}/noise_u`).data, `step ${step}, noise`),
      };
    const { loss } = model.step(batch(), grads, null, { weight: 1, accumulate: false }, extras);
    const expected = fx.losses[step - 1];
    if (!(Math.abs(loss - expected) <= TOLERANCE))
      found.push(`step ${step}: loss ${loss}, the reference's ${expected}`);
    // Child-Tuning-F's masks, replayed into the tensors' bitsets as a recorded run's are (engine layout).
    specs.forEach((spec, i) => {
      const keep = recorded(spec.name);
      if (kind !== 'child-tuning-f' || !keep) return;
      const bits = state.bits[i];
      bits.fill(0);
      relayout(spec, keep.data, 'engine').forEach((k, j) => {
        if (k) bits[j >> 3] |= 1 << (j & 7);
      });
    });
    const adam = adamwStep(settings, step, s.lr);
    specs.forEach((spec, index) => {
      if (!trains(spec)) return;
      updateSegment(state, { index, lo: 0, hi: values[index].length }, hooks, step, 1, adam, spec.decay, jsPasses);
    });
    model.markDirty();
  }

  const worst: [string, number][] = [];
  for (const name of fx.trainable) {
    const i = byName.get(name);
    if (i === undefined) continue;
    const want = tensor(`${kind}/after/${name}`).data;
    const got = relayout(specs[i], values[i], 'checkpoint');
    if (got.length !== want.length) {
      found.push(`${name}: ${got.length} elements here, ${want.length} in the reference`);
      continue;
    }
    let d = 0;
    for (let j = 0; j < want.length; j++)
      d = Math.max(d, Math.abs(got[j] - want[j]) || (got[j] === want[j] ? 0 : Infinity));
    if (d > TOLERANCE) worst.push([name, d]);
  }
  worst.sort((a, b) => b[1] - a[1]);
  if (worst.length)
    found.push(
      `${worst.length} tensor(s) after step ${reference.steps} differ by more than ${TOLERANCE}: ` +
        listed(worst.map(([n, d]) => `${n} ${d.toPrecision(3)}`)),
    );
  model.dispose();
  return found;
}

describe('parity with the reference implementations (three AdamW steps, BERT-tiny, dropout off)', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  for (const kind of Object.keys(reference.kinds))
    test(kind, async () => {
      const found = await differences(kind);
      assert.ok(found.length === 0, `${kind} differs from its reference:\n- ${found.join('\n- ')}`);
    });
});
