import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { compilePlan } from '../src/plan/compiler.js';
import { expandSweep } from '../src/plan/sweep.js';
import { loadRecipe } from '../src/recipe/index.js';
import { DIAGNOSTIC_CODES, type DiagnosticCode } from '../src/recipe/diagnostics.js';
import { parseRecipeText } from '../src/recipe/parse.js';
import { FIXTURES, GLUE, REPO, tmpProject, write } from './helpers.js';

const MODEL = path.join(FIXTURES, 'bert-tiny-glue-mlm');
const env = { CHILDTUNE_MODEL: MODEL, CHILDTUNE_DATA: path.dirname(GLUE) };
const base = (extra = '') => `version: 1
model:
  path: \${CHILDTUNE_MODEL}
dataset:
  task: glue/rte
  dir: \${CHILDTUNE_DATA}/glue/RTE
${extra}`;

/** A recipe over a built-in task whose files are under ./d (line 6 is the dir). */
const local = (task: string) =>
  `version: 1\nmodel:\n  path: \${CHILDTUNE_MODELS}/bert-tiny-glue-mlm\ndataset:\n  task: ${task}\n  dir: ./d\n`;
const RTE_HEAD = 'index\tsentence1\tsentence2\tlabel\n';
const STSB_HEAD = 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n';
const stsb = (score: string) => `0\tmain\tx\t2012\t1\tnone\tnone\ta\tb\t${score}\n`;

function load(text: string, opts: { sets?: string[]; files?: Record<string, string> } = {}) {
  const dir = tmpProject();
  for (const [n, t] of Object.entries(opts.files ?? {})) write(dir, n, t);
  return loadRecipe(write(dir, 'r.yaml', text), { env, sets: opts.sets });
}

/** `1, 2, ..., n` as a YAML flow list's items. */
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1).join(', ');

const codes = (r: ReturnType<typeof load>) => r.diagnostics.map((d) => d.code);
const only = (r: ReturnType<typeof load>, code: DiagnosticCode) => {
  const d = r.diagnostics.find((x) => x.code === code);
  assert.ok(d, `expected ${code}, got ${JSON.stringify(r.diagnostics, null, 1)}`);
  return d!;
};

describe('diagnostics: every code, with its position', () => {
  const cases: [DiagnosticCode, string, { line: number; column: number } | null, Parameters<typeof load>[1]?][] = [
    ['CT0001', base('strategy: {kind: vanilla\n'), { line: 8, column: 1 }],
    ['CT0002', base('name: !!js/function "x"\n'), { line: 7, column: 7 }],
    ['CT0003', 'version: 1\nname: "' + 'x'.repeat(1 << 20) + '"\n', { line: 1, column: 1 }],
    ['CT0004', base('name: ' + '['.repeat(40) + ']'.repeat(40) + '\n'), null],
    ['CT0005', '- just\n- a list\n', { line: 1, column: 1 }],
    ['CT0101', base().replace('version: 1', 'version: 2'), { line: 1, column: 1 }],
    ['CT0102', base('trainig: {epochs: 1}\n'), { line: 7, column: 1 }],
    ['CT0103', 'version: 1\ndataset: {task: glue/rte}\n', { line: 1, column: 1 }],
    ['CT0104', base('training: {epochs: three}\n'), { line: 7, column: 12 }],
    ['CT0105', base('strategy: {kind: child-tuning-x, reserve_p: 0.3}\n'), { line: 7, column: 12 }],
    ['CT0106', base('training: {batch_size: 0}\n'), { line: 7, column: 12 }],
    ['CT0107', base('training: {optimizer: {betas: [0.9]}}\n'), { line: 7, column: 24 }],
    ['CT0108', base('name: ../elsewhere/run\n'), { line: 7, column: 1 }],
    ['CT0201', 'extends: ./missing.yaml\n' + base(), { line: 1, column: 1 }],
    [
      'CT0202',
      'extends: ./b.yaml\n' + base(),
      { line: 1, column: 1 },
      { files: { 'b.yaml': 'extends: ./r.yaml\nversion: 1\n' } },
    ],
    ['CT0203', 'extends: ../../etc/base.yaml\n' + base(), { line: 1, column: 1 }],
    ['CT0204', base(), { line: 1, column: 1 }, { sets: ['training.epoch=3'] }],
    ['CT0205', base('runtime: {output_dir: "${NOT_SET_ANYWHERE}/runs"}\n'), { line: 7, column: 11 }],
    ['CT0301', base('strategy: {kind: child-tuning-f, reserve_p: 1.5}\n'), { line: 7, column: 34 }],
    ['CT0302', base('strategy: {kind: child-tuning-d}\n'), { line: 7, column: 1 }],
    ['CT0303', base('strategy: {kind: vanilla, fisher: {estimator: batch}}\n'), { line: 7, column: 27 }],
    [
      'CT0304',
      base().replace('dir: ${CHILDTUNE_DATA}/glue/RTE', 'dir: ${CHILDTUNE_DATA}/glue/RTE\n  subsample: {size: 5000}'),
      { line: 7, column: 15 },
    ],
    [
      'CT0305',
      base(
        'transfer:\n  domain:\n    - name: sst\n      dataset: {task: glue/sst-2, dir: "${CHILDTUNE_DATA}/glue/SST-2"}\n      label_map: {entailment: "1"}\n',
      ),
      { line: 11, column: 7 },
    ],
    ['CT0306', base('sweep: {grid: {training.optimizer.lrr: [1, 2]}}\n'), { line: 7, column: 16 }],
    ['CT0307', base().replace('task: glue/rte', 'task: custom'), { line: 4, column: 1 }],
    ['CT0308', base().replace('glue/RTE', 'glue/NOPE'), { line: 6, column: 3 }],
    ['CT0309', base().replace('${CHILDTUNE_MODEL}', '${CHILDTUNE_MODEL}/no-such-model'), { line: 3, column: 3 }],
    ['CT0310', base('evaluation: {metrics: [pearson]}\n'), { line: 7, column: 24 }],
    [
      'CT0311',
      base(`sweep:\n  grid: {training.epochs: [${range(101)}], training.batch_size: [${range(100)}]}\n`),
      { line: 7, column: 1 },
    ],
    [
      'CT0320',
      local('glue/rte'),
      { line: 6, column: 3 },
      { files: { 'd/train.tsv': `${RTE_HEAD}0\ta\tb\tmaybe\n`, 'd/dev.tsv': `${RTE_HEAD}0\ta\tb\tentailment\n` } },
    ],
    [
      'CT0321',
      local('glue/sts-b'),
      { line: 6, column: 3 },
      { files: { 'd/train.tsv': `${STSB_HEAD}${stsb('1e30')}`, 'd/dev.tsv': `${STSB_HEAD}${stsb('4.2')}` } },
    ],
    [
      'CT0322',
      local('glue/rte'),
      { line: 6, column: 3 },
      { files: { 'd/train.tsv': `${RTE_HEAD}0\ta\tentailment\n`, 'd/dev.tsv': `${RTE_HEAD}0\ta\tb\tentailment\n` } },
    ],
    [
      'CT0323',
      local('glue/rte'),
      { line: 6, column: 3 },
      {
        files: {
          'd/train.tsv': `${RTE_HEAD}0\t${'x'.repeat(1 << 21)}\tb\tentailment\n`,
          'd/dev.tsv': `${RTE_HEAD}0\ta\tb\tentailment\n`,
        },
      },
    ],
    [
      'CT0324',
      local('glue/rte'),
      { line: 6, column: 3 },
      { files: { 'd/train.tsv': '', 'd/dev.tsv': `${RTE_HEAD}0\ta\tb\tentailment\n` } },
    ],
    // bf16 products are the CPU's native kernels' (never emulated): another backend is refused.
    ['CT0340', base('training: {precision: bf16}\nruntime: {backend: cpu}\n'), { line: 7, column: 12 }],
    [
      'CT0325',
      local('glue/rte'),
      { line: 6, column: 3 },
      { files: { 'd/train.tsv': 'idx\ttext\n0\ta\n', 'd/dev.tsv': `${RTE_HEAD}0\ta\tb\tentailment\n` } },
    ],
  ];
  test('the cases cover the whole closed set of codes', () => {
    assert.deepEqual(
      new Set(cases.map(([c]) => c)),
      new Set([...Object.keys(DIAGNOSTIC_CODES)].filter((c) => c !== 'CT0006')),
    );
  });
  for (const [code, text, position, opts] of cases) {
    test(`${code} ${DIAGNOSTIC_CODES[code]}`, () => {
      const d = only(load(text, opts), code);
      assert.ok(d.message.length > 10);
      if (position) {
        assert.equal(d.location?.line, position.line, JSON.stringify(d));
        assert.equal(d.location?.column, position.column, JSON.stringify(d));
      }
    });
  }
  test('CT0006 file-unreadable', () => {
    const r = loadRecipe(path.join(tmpProject(), 'nope.yaml'), { env });
    assert.deepEqual(codes(r), ['CT0006']);
  });
});

describe('values YAML types one way and the schema another (issue 29)', () => {
  test('a ${VAR} in a number field is text: CT0104 says why and how to pass a number from the environment', () => {
    const dir = tmpProject();
    const r = loadRecipe(write(dir, 'r.yaml', base('training: {optimizer: {lr: "${LR}"}}\n')), {
      env: { ...env, LR: '3e-5' },
    });
    const d = only(r, 'CT0104');
    assert.equal(d.message, 'training.optimizer.lr is string "3e-5"; expected number');
    assert.deepEqual(d.location, { file: path.join(dir, 'r.yaml'), line: 7, column: 24 });
    assert.match(d.notes!.join('\n'), /\$\{VAR\}, which YAML reads as a string before the variable is interpolated/);
    assert.match(d.notes!.join('\n'), /--set training\.optimizer\.lr=\$VAR/);
    assert.equal(only(load(base('training: {epochs: "three"}\n')), 'CT0104').notes, undefined, 'no note for mere text');
  });
  test('a number beyond the range of a double is named as such, never as null', () => {
    const set = only(load(base(), { sets: ['training.optimizer.lr=1e309'] }), 'CT0204');
    assert.match(set.message, /--set training\.optimizer\.lr: '1e309' is beyond the range of a number/);
    const written = only(load(base('training: {optimizer: {lr: 1e309}}\n')), 'CT0106');
    assert.match(
      written.message,
      /^training\.optimizer\.lr is Infinity \(beyond the range of a number\); it must be <= 1$/,
    );
  });
});

describe('did-you-mean and collection', () => {
  test('misspelled keys and enum values get suggestions; a misspelled required key is one diagnostic', () => {
    assert.equal(only(load(base('trainig: {}\n')), 'CT0102').suggestion, 'training');
    assert.equal(
      only(load(base('strategy: {kind: child-tuning-dd, reserve_p: 0.2}\n')), 'CT0105').suggestion,
      'child-tuning-d',
    );
    const r = load(base().replace('dataset:', 'datset:'));
    assert.deepEqual(codes(r), ['CT0102']);
    assert.equal(r.diagnostics[0].suggestion, 'dataset');
  });
  test('all problems are reported at once', () => {
    const r = load(
      base('trainig: {}\nstrategy: {kind: child-tuning-f, reserve_p: 0}\nevaluation: {checkpoint: worst}\n'),
    );
    assert.ok(r.diagnostics.length >= 2);
    assert.ok(codes(r).includes('CT0102') && codes(r).includes('CT0105'));
  });
});

describe('composition', () => {
  const files = {
    'base.yaml': base(
      'training: {epochs: 5, optimizer: {lr: 1.0e-5, betas: [0.8, 0.9]}}\nsweep: {seeds: [1, 2, 3]}\nname: base\n',
    ),
  };
  test('mappings merge, lists and scalars replace, null removes, paths resolve against their file', () => {
    const r = load('extends: ./base.yaml\ntraining: {optimizer: {lr: 3.0e-5}}\nsweep: {seeds: [7]}\nname: null\n', {
      files,
    });
    assert.equal(r.recipe!.training.epochs, 5);
    assert.equal(r.recipe!.training.optimizer.lr, 3e-5);
    assert.deepEqual(r.recipe!.training.optimizer.betas, [0.8, 0.9]);
    assert.deepEqual(r.recipe!.sweep!.seeds, [7]);
    assert.equal(r.recipe!.name, undefined);
    assert.equal(r.recipe!.model.path, MODEL);
  });
  test('--set overrides are typed by the schema and applied last', () => {
    const r = load('extends: ./base.yaml\n', {
      files,
      sets: [
        'training.epochs=2',
        'training.optimizer.betas=[0.9, 0.98]',
        'name=123',
        'strategy.kind=child-tuning-f',
        'strategy.reserve_p=0.2',
      ],
    });
    assert.equal(r.recipe!.training.epochs, 2);
    assert.deepEqual(r.recipe!.training.optimizer.betas, [0.9, 0.98]);
    assert.equal(r.recipe!.name, '123');
    assert.equal(r.recipe!.strategy.reserve_p, 0.2);
    const bad = load(base(), { sets: ['training.epochs=many'] });
    assert.equal(only(bad, 'CT0104').location?.file, '--set');
    assert.equal(only(load(base(), { sets: ['training.optimizr.lr=1'] }), 'CT0204').suggestion, 'training.optimizer');
  });
  test('a diagnostic in a base file points into the base file', () => {
    const r = load('extends: ./b.yaml\n', { files: { 'b.yaml': base('training: {epochs: -1}\n') } });
    assert.match(only(r, 'CT0106').location!.file, /b\.yaml$/);
  });
});

describe('plan hashing', () => {
  const recipe = base('strategy: {kind: child-tuning-d, reserve_p: 0.3}\n').replace(
    'glue/RTE',
    'glue/RTE\n  subsample: {size: 200, seed: 1}',
  );
  const planOf = (sets: string[] = [], text = recipe) => {
    const dir = tmpProject();
    const file = write(dir, 'r.yaml', text);
    const p = compilePlan(loadRecipe(file, { env, sets }), file).plan!;
    const hash = (kind: string) => p.stages.find((s) => s.kind === kind)!.hash;
    return { p, hash };
  };
  test('same inputs, same hashes; output paths and log frequency change nothing', () => {
    const a = planOf();
    const b = planOf(['runtime.output_dir=elsewhere', 'training.log_every=3', 'name=other']);
    assert.deepEqual(
      a.p.stages.map((s) => s.hash),
      b.p.stages.map((s) => s.hash),
    );
  });
  test('the learning rate changes train but not fisher; the subsample seed changes both', () => {
    const a = planOf();
    const lr = planOf(['training.optimizer.lr=5e-5']);
    assert.equal(lr.hash('fisher'), a.hash('fisher'));
    assert.notEqual(lr.hash('train'), a.hash('train'));
    const seed = planOf(['dataset.subsample.seed=2']);
    assert.notEqual(seed.hash('fisher'), a.hash('fisher'));
    assert.notEqual(seed.hash('train'), a.hash('train'));
    assert.notEqual(planOf(['strategy.fisher.estimator=per-example']).hash('fisher'), a.hash('fisher'));
    assert.notEqual(planOf(['model.max_seq_length=64']).hash('tokenize'), a.hash('tokenize'));
  });
  test('a sweep plans every trial and shares each fisher stage across the trials it does not differ in', () => {
    const { p } = planOf([], recipe + 'sweep: {grid: {training.optimizer.lr: [1.0e-5, 2.0e-5]}, seeds: [1, 2]}\n');
    assert.equal(p.trials.length, 4);
    // The checkpoint has no classifier: each seed draws its own head, which the Fisher pass runs through.
    assert.deepEqual(
      p.stages.filter((s) => s.kind === 'fisher').map((s) => s.trials),
      [
        [0, 2],
        [1, 3],
      ],
    );
    assert.equal(p.stages.filter((s) => s.kind === 'train').length, 4);
    assert.deepEqual(
      p.trials.map((t) => t.overrides),
      [
        { 'training.optimizer.lr': 1e-5, 'training.seed': 1 },
        { 'training.optimizer.lr': 1e-5, 'training.seed': 2 },
        { 'training.optimizer.lr': 2e-5, 'training.seed': 1 },
        { 'training.optimizer.lr': 2e-5, 'training.seed': 2 },
      ],
    );
    const fisher = p.stages.find((s) => s.kind === 'fisher')!;
    assert.equal(fisher.cached, false);
    assert.ok(fisher.memory!.fisher > 0 && fisher.work!.steps === Math.ceil(200 / 16));
  });
  test('random sweeps are deterministic for their seed', () => {
    const sweep = {
      random: {
        trials: 3,
        seed: 4,
        space: {
          'training.optimizer.lr': { min: 1e-5, max: 1e-4, log: true },
          'training.batch_size': { values: [8, 16] },
        },
      },
    };
    assert.deepEqual(expandSweep(sweep as never), expandSweep(sweep as never));
    assert.notDeepEqual(expandSweep(sweep as never), expandSweep({ random: { ...sweep.random, seed: 5 } } as never));
  });
});

test('types.generated.ts is up to date with the schema', () => {
  execFileSync(process.execPath, [path.join(REPO, 'schema', 'generate-types.mjs'), '--check']);
});

test('validate and plan touch nothing on disk', () => {
  const dir = tmpProject();
  const file = write(dir, 'r.yaml', base('strategy: {kind: child-tuning-d, reserve_p: 0.3}\n'));
  const before = fs.readdirSync(dir).sort();
  compilePlan(loadRecipe(file, { env }), file);
  assert.deepEqual(fs.readdirSync(dir).sort(), before);
});

describe('fuzz', () => {
  const seedText = base(
    'strategy: {kind: child-tuning-d, reserve_p: 0.3, fisher: {estimator: batch}}\ntraining: {epochs: 2, optimizer: {lr: 2.0e-5}}\nsweep: {seeds: [1, 2]}\n',
  );
  test('random bytes always give structured diagnostics, never a throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const r = parseRecipeText(Buffer.from(bytes).toString('utf8'), 'f.yaml');
        assert.ok(r.value !== undefined || r.diagnostics.length > 0);
        for (const d of r.diagnostics) assert.ok(d.code in DIAGNOSTIC_CODES);
      }),
      { numRuns: 300 },
    );
  });
  test('mutated recipes always load to a recipe or to coded diagnostics', () => {
    const dir = tmpProject();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seedText.length - 1 }),
        fc.integer({ min: 0, max: 8 }),
        fc.string({ maxLength: 6 }),
        (at, del, ins) => {
          const text = seedText.slice(0, at) + ins + seedText.slice(at + del);
          const r = loadRecipe(write(dir, 'r.yaml', text), { env });
          assert.ok(r.recipe || r.diagnostics.some((d) => d.severity === 'error'));
          for (const d of r.diagnostics) assert.ok(d.code in DIAGNOSTIC_CODES && typeof d.message === 'string');
        },
      ),
      { numRuns: 200 },
    );
  });
});
