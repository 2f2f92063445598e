import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { selectBackend } from '../src/engine/backend.js';
import { adamwStep, jsPasses } from '../src/engine/optimizer.js';
import { OptimizerKernels, SharedArena } from '../src/engine/optimizer-wasm.js';
import { updateSegment } from '../src/engine/parallel/shard.js';
import { sizeOf } from '../src/engine/params.js';
import { Rng } from '../src/engine/rng.js';
import type { DiagnosticCode } from '../src/recipe/diagnostics.js';
import { loadRecipe } from '../src/recipe/index.js';
import { recipeSchema, type JsonSchema } from '../src/recipe/schema.js';
import { childTuningD } from '../src/strategies/child-tuning-d/index.js';
import { childTuningF } from '../src/strategies/child-tuning-f/index.js';
import { hooksFrom, STRATEGIES } from '../src/strategies/registry.js';
import { maskRange, type Strategy } from '../src/strategies/strategy.js';
import { vanilla } from '../src/strategies/vanilla/index.js';
import { DataParallel } from '../src/run/parallel.js';
import { collectRuns } from '../src/run/report/collect.js';
import { groupRuns } from '../src/run/report/group.js';
import { buildTable, markdownTable } from '../src/run/report/tables.js';
import { AdamW, FIXTURES, GLUE, microModel, randomMicroBatches, REPO, tmpProject, write } from './helpers.js';

const SRC = path.join(REPO, 'src');
const kinds = STRATEGIES.map((d) => d.kind);
const branchOf = (kind: string) => recipeSchema.$defs![`strategy-${kind}`];
const options = (node: JsonSchema) => Object.entries(node.properties ?? {}).filter(([k]) => k !== 'kind');

describe('the strategy registry', () => {
  test("is the schema's union: one branch per registered kind, each its folder's fragment", () => {
    const union = recipeSchema.$defs!.strategy;
    assert.deepEqual([...(union.properties!.kind.enum as string[])].sort(), [...kinds].sort());
    assert.deepEqual(
      (union.allOf as { then: JsonSchema }[]).map((b) => b.then.$ref).sort(),
      kinds.map((k) => `#/$defs/strategy-${k}`).sort(),
    );
    for (const kind of kinds) {
      const fragment = JSON.parse(
        fs.readFileSync(path.join(SRC, 'strategies', kind, 'schema.json'), 'utf8'),
      ) as JsonSchema;
      const own = options(branchOf(kind))
        .filter(([, p]) => !p['x-owners'])
        .map(([k]) => k);
      // Plus child_tuning (Child-Tuning inside its trainable set), which every kind takes unless it opts out.
      const composable = fragment['x-child-tuning'] !== false;
      assert.deepEqual(
        own,
        [...Object.keys(fragment.properties!).filter((k) => k !== 'kind'), ...(composable ? ['child_tuning'] : [])],
        `${kind}'s own options are its fragment's`,
      );
    }
    const folders = fs
      .readdirSync(path.join(SRC, 'strategies'))
      .filter((d) => fs.existsSync(path.join(SRC, 'strategies', d, 'schema.json')));
    assert.deepEqual(folders.sort(), [...kinds].sort(), 'every folder with a fragment is registered');
  });

  // The report groups finished runs by the kind their results.json names, vanilla being the paper's baseline:
  // it reads past runs, not the registry, so src/run/report is not searched.
  test('is the only place outside src/strategies (and the report of past runs) that chooses by kind', () => {
    const files = (dir: string): string[] =>
      fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) =>
          e.isDirectory()
            ? files(path.join(dir, e.name))
            : e.name.endsWith('.ts') && !e.name.endsWith('.generated.ts')
              ? [path.join(dir, e.name)]
              : [],
        );
    const literal = kinds.map((k) => k.replace(/-/g, '\\-')).join('|');
    const choice = new RegExp(`(===|!==|case|\\.with\\()\\s*'(${literal})'|'(${literal})'\\s*(===|!==)`);
    const offenders = files(SRC)
      .filter(
        (f) => ![path.join(SRC, 'strategies'), path.join(SRC, 'run', 'report')].some((d) => f.startsWith(d + path.sep)),
      )
      .flatMap((f) =>
        fs
          .readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => [f, i + 1, line] as const)
          .filter(([, , line]) => choice.test(line)),
      );
    assert.deepEqual(
      offenders.map(([f, n, line]) => `${path.relative(REPO, f)}:${n}: ${line.trim()}`),
      [],
    );
  });
});

describe('misplaced strategy options', () => {
  const base = `version: 1\nmodel: {path: ${path.join(FIXTURES, 'bert-tiny-glue-mlm')}}\ndataset: {task: glue/rte, dir: ${path.join(GLUE, 'RTE')}}\n`;
  const load = (strategy: Record<string, unknown>) =>
    loadRecipe(write(tmpProject(), 'r.yaml', `${base}strategy: ${JSON.stringify(strategy)}\n`), { env: {} });
  const onStrategy = (r: ReturnType<typeof load>) =>
    r.diagnostics
      .filter((d) => d.pointer.startsWith('/strategy'))
      .map((d) => [d.code, d.pointer] as [DiagnosticCode, string]);
  // A valid recipe of each kind: the options its fragment's examples give.
  const valid = (kind: string) =>
    Object.fromEntries([
      ['kind', kind],
      ...options(branchOf(kind))
        .filter(([k, p]) => !p['x-owners'] && k === 'reserve_p')
        .map(([k, p]) => [k, (p.examples as unknown[])[0]]),
    ]);

  for (const kind of kinds) {
    test(`${kind}: every other kind's option is reported against ${kind}, naming the kinds it belongs to, and its value still checked`, () => {
      assert.deepEqual(onStrategy(load(valid(kind))), [], `the ${kind} recipe itself is valid`);
      for (const [key, node] of options(branchOf(kind)).filter(([, p]) => p['x-owners'])) {
        const owners = node['x-owners'] as string[];
        const example = (options(branchOf(owners[0])).find(([k]) => k === key)![1].examples as unknown[])[0];
        const r = load({ ...valid(kind), [key]: example });
        assert.deepEqual(onStrategy(r), [['CT0303', `/strategy/${key}`]], `${key} on ${kind}`);
        assert.equal(r.diagnostics[0].message, `${key} applies only to ${owners.join(' and ')}`);
        assert.match(r.diagnostics[0].notes!.at(-1)!, new RegExp(`--set strategy\\.${key}=null`));
      }
    });
  }

  test('a misspelled option is told apart by kind: did-you-mean and the allowed keys follow the kind written', () => {
    const f = load({ kind: 'child-tuning-f', reserve_p: 0.3, f_mask: { record: true } });
    assert.deepEqual(onStrategy(f), [['CT0102', '/strategy/f_mask']]);
    assert.equal(f.diagnostics[0].suggestion, 'f_masks');
    assert.deepEqual(f.diagnostics[0].notes, ['allowed keys: kind, reserve_p, scope, f_masks']);
    const d = load({ kind: 'child-tuning-d', reserve_p: 0.3, fishr: {} });
    assert.equal(d.diagnostics[0].suggestion, 'fisher');
    assert.deepEqual(d.diagnostics[0].notes, ['allowed keys: kind, reserve_p, mask_weight_decay, fisher']);
    assert.deepEqual(load({ kind: 'vanilla', reserv_p: 0.3 }).diagnostics[0].notes, ['allowed keys: kind']);
  });

  test('a misplaced option keeps its own checks: an F recipe with a bad fisher block gets both errors', () => {
    const r = load({ kind: 'child-tuning-f', reserve_p: 0.3, fisher: { estimator: 'nope' } });
    assert.deepEqual(onStrategy(r), [
      ['CT0303', '/strategy/fisher'],
      ['CT0105', '/strategy/fisher/estimator'],
    ]);
  });

  test("D's scope goes in its fisher block, and the note says so", () => {
    const r = load({ kind: 'child-tuning-d', reserve_p: 0.3, scope: 'all' });
    assert.deepEqual(r.diagnostics[0].notes![0], 'For child-tuning-d, set strategy.fisher.scope.');
  });
});

/** One bitset per tensor, about half the bits set, for D. */
const halfMasks = (model: ReturnType<typeof microModel>, seed: number) => {
  const rng = new Rng(seed);
  return model.specs.map((s) =>
    s.group === 'encoder' ? Uint8Array.from({ length: Math.ceil(sizeOf(s) / 8) }, () => rng.int(256)) : undefined,
  );
};

describe('hooks rebuilt from prepared data', () => {
  test("a worker's hooks, rebuilt from the structured-cloned message, transform like the main thread's", () => {
    const model = microModel();
    const strategies: Strategy[] = [
      vanilla(),
      childTuningF(0.4, 'encoder', model.specs, 11),
      childTuningD(halfMasks(model, 3), true),
    ];
    for (const s of strategies) {
      const rebuilt = hooksFrom(structuredClone(s.message));
      assert.equal(rebuilt.kind, s.kind);
      assert.deepEqual(rebuilt.fixedBits, s.spec.fixedBits);
      assert.deepEqual(rebuilt.trains, s.spec.trains);
      model.specs.forEach((spec, i) => {
        const n = sizeOf(spec);
        const g = Float32Array.from({ length: n }, (_, j) => Math.sin(j + i));
        const [a, b] = [Float32Array.from(g), Float32Array.from(g)];
        const [bitsA, bitsB] = [new Uint8Array(Math.ceil(n / 8)), new Uint8Array(Math.ceil(n / 8))];
        assert.equal(
          maskRange(rebuilt, i, a, 0, n, 5, jsPasses, bitsA),
          maskRange(s.spec, i, b, 0, n, 5, jsPasses, bitsB),
        );
        assert.deepEqual(a, b, `${s.kind} ${spec.name}`);
        assert.deepEqual(rebuilt.decayMask?.(i), s.spec.decayMask?.(i));
      });
    }
    model.dispose();
  });

  test('a frozen tensor gets neither a moments update nor a weight change', () => {
    const n = 64;
    const state = {
      values: [new Float32Array(n).fill(1), new Float32Array(n).fill(1)],
      grads: [[new Float32Array(n).fill(0.5), new Float32Array(n).fill(0.5)]],
      m: [new Float32Array(n), new Float32Array(n)],
      v: [new Float32Array(n), new Float32Array(n)],
    };
    const adam = adamwStep({ lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 }, 1, 1e-2);
    const hooks = { kind: 'test', trains: [false, true] };
    for (const index of [0, 1]) updateSegment(state, { index, lo: 0, hi: n }, hooks, 1, 1, adam, true);
    assert.ok(
      state.values[0].every((x) => x === 1) && state.m[0].every((x) => x === 0) && state.v[0].every((x) => x === 0),
    );
    assert.ok(state.values[1].every((x) => x !== 1) && state.m[1].every((x) => x !== 0));
  });
});

describe("Child-Tuning-D's mask on the wasm pass", () => {
  /** The JavaScript multiply D ran before it moved onto the wasm pass. */
  const jsMask = (g: Float32Array, bits: Uint8Array, lo: number, hi: number) => {
    for (let j = lo; j < hi; j++) g[j] *= (bits[j >> 3] >> (j & 7)) & 1;
  };

  test('equals the JavaScript multiply by the bit, bit for bit, on any gradient (zeros, negatives, infinities, NaN)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noDefaultInfinity: false, noNaN: false }), { minLength: 1, maxLength: 300 }),
        fc.nat(),
        fc.nat(),
        (xs, a, seed) => {
          const n = xs.length;
          const lo = Math.min(n - 1, (a % n) & ~7);
          const arena = SharedArena.create([n, Math.ceil(n / 32), 8])!;
          const g = arena.floats(n);
          const bits = arena.bits(n);
          const rng = new Rng(seed);
          for (let i = 0; i < bits.length; i++) bits[i] = rng.int(256);
          g.set(xs);
          const reference = Float32Array.from(xs);
          jsMask(reference, bits, lo, n);
          const d = childTuningD([Uint8Array.from(bits)], false);
          const kernels = new OptimizerKernels(arena.memory, arena.floats(8));
          assert.equal(maskRange(d.spec, 0, g, lo, n, 1, kernels, bits), n - lo);
          assert.deepEqual(
            new Uint8Array(g.buffer, g.byteOffset, 4 * n),
            new Uint8Array(reference.buffer),
            'same float bits',
          );
        },
      ),
    );
  });

  const batches = randomMicroBatches(4, 3);
  const adam = { lr: 1e-2, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 };

  test('a run on the wasm passes (bitsets in the arena) trains the weights of the JavaScript passes, bit for bit', async () => {
    await selectBackend('wasm');
    const reference = microModel();
    const strategy = childTuningD(halfMasks(reference, 9), true);
    const opt = new AdamW(reference.specs, adam);
    const grads = reference.specs.map((s) => new Float32Array(sizeOf(s)));
    for (const b of batches) {
      reference.step(b, grads, null);
      opt.update(reference.values, grads, 1e-2, strategy);
      reference.markDirty();
    }
    const model = microModel();
    const dp = await DataParallel.start(model, { threads: 1, backend: 'wasm', adam });
    try {
      assert.ok(
        model.values.every((v) => v.buffer === model.values[0].buffer),
        'every tensor in one wasm arena',
      );
      await dp.setStrategy(strategy);
      for (const b of batches) {
        await dp.gradients(b, null);
        await dp.update(1e-2, 1, strategy);
      }
      assert.deepEqual(
        model.values.map((v) => Float32Array.from(v)),
        reference.values,
      );
    } finally {
      await dp.close();
      reference.dispose();
    }
  });

  test("two threads: each rebuilds D's hooks and copies its part of the child network; elements outside it never move", async () => {
    await selectBackend('wasm');
    const model = microModel();
    const start = model.values.map((v) => Float32Array.from(v));
    const masks = halfMasks(model, 9);
    const dp = await DataParallel.start(model, { threads: 2, backend: 'wasm', adam });
    try {
      const strategy = childTuningD(masks, true);
      await dp.setStrategy(strategy);
      for (const [k, b] of batches.entries()) {
        await dp.gradients(b, k);
        await dp.update(1e-2, 1, strategy);
      }
    } finally {
      await dp.close();
    }
    let moved = 0;
    masks.forEach((m, i) => {
      if (!m) return;
      for (let j = 0; j < start[i].length; j++) {
        if (!((m[j >> 3] >> (j & 7)) & 1))
          assert.equal(model.values[i][j], start[i][j], `${model.specs[i].name}[${j}]`);
        else if (model.values[i][j] !== start[i][j]) moved++;
      }
    });
    assert.ok(moved > 100, `${moved} child elements moved`);
    model.dispose();
  });
});

describe('the report', () => {
  test('shows the share of parameters that trained in a last column, where the runs recorded it', () => {
    const dir = tmpProject();
    const run = (name: string, strategy: string, share: number | undefined, seed: number) =>
      write(
        path.join(dir, name),
        'results.json',
        JSON.stringify({
          task: 'glue/rte',
          strategy,
          reserve_p: null,
          seed,
          metrics: { accuracy: 0.5 + seed / 100 },
          ...(share === undefined ? {} : { trainable_parameters: 10, trainable_share: share }),
        }),
      );
    run('a', 'vanilla', 1, 1);
    run('b', 'vanilla', 1, 2);
    const grouping = groupRuns(collectRuns([path.join(dir, 'a'), path.join(dir, 'b')]), 'vanilla');
    const table = buildTable(grouping, [], 'vanilla');
    assert.equal(table.rows[0].trainable, 1);
    assert.match(
      markdownTable(table),
      /^\| strategy \| glue\/rte \(accuracy\) \| trainable \|\n\|---\|---\|---\|\n\| vanilla \| [^|]+ \| 100\.00% \|\n/,
    );
    run('c', 'vanilla', undefined, 3);
    const older = buildTable(groupRuns(collectRuns([path.join(dir, 'c')]), 'vanilla'), [], 'vanilla');
    assert.equal(older.rows[0].trainable, null);
    assert.match(
      markdownTable(older),
      /^\| strategy \| glue\/rte \(accuracy\) \|\n/,
      'runs that did not record it get no column',
    );
  });
});
