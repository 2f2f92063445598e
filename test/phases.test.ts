import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { STARTER_RECIPE } from '../src/cli/starter.js';
import { diagnostic, ordered, type Diagnostic, type DiagnosticCode } from '../src/recipe/diagnostics.js';
import { loadRecipe } from '../src/recipe/index.js';
import { parseRecipeText } from '../src/recipe/parse.js';
import { cli, FIXTURES, GLUE, tmpProject, write } from './helpers.js';

const MODEL = path.join(FIXTURES, 'bert-tiny-glue-mlm');
const RTE = path.join(GLUE, 'RTE');
/** Written absolute, so the recipes below need no environment variable but the unset one they test. */
const base = (extra = '') =>
  `version: 1\nmodel:\n  path: ${MODEL}\ndataset:\n  task: glue/rte\n  dir: ${RTE}\n${extra}`;

function load(
  text: string,
  opts: { sets?: string[]; files?: Record<string, string>; env?: Record<string, string> } = {},
) {
  const dir = tmpProject();
  for (const [n, t] of Object.entries(opts.files ?? {})) write(dir, n, t);
  return loadRecipe(write(dir, 'r.yaml', text), { env: opts.env ?? {}, sets: opts.sets });
}

const codes = (r: { diagnostics: Diagnostic[] }) => r.diagnostics.map((d) => d.code);
const find = (r: { diagnostics: Diagnostic[] }, code: DiagnosticCode, pointer?: string) => {
  const d = r.diagnostics.find((x) => x.code === code && (pointer === undefined || x.pointer === pointer));
  assert.ok(d, `expected ${code}${pointer ? ` at ${pointer}` : ''}, got ${JSON.stringify(r.diagnostics, null, 1)}`);
  return d!;
};
const position = (d: Diagnostic) => `${d.location?.line}:${d.location?.column}`;

describe('every phase in one run (issue 21)', () => {
  // One error of each phase: interpolation (line 4), data (9), schema with a did-you-mean (10),
  // cross-field (13, 13, 14) and paths (16).
  const recipe = `version: 1
name: every-phase
model:
  path: \${CT_TEST_UNSET_MODELS}/bert-tiny-glue-mlm
  max_seq_length: 64
dataset:
  task: glue/rte
  dir: ${RTE}
  subsample: {size: 5000}
trainig: {epochs: 1}
strategy:
  kind: vanilla
  reserve_p: 1.5
  fisher: {estimator: batch}
runtime:
  output_dir: ../outside/runs
`;
  const expected: [DiagnosticCode, string, string][] = [
    ['CT0205', '/model/path', '4:3'],
    ['CT0304', '/dataset/subsample/size', '9:15'],
    ['CT0102', '/trainig', '10:1'],
    ['CT0301', '/strategy/reserve_p', '13:3'],
    ['CT0303', '/strategy/reserve_p', '13:3'],
    ['CT0303', '/strategy/fisher', '14:3'],
    ['CT0203', '/runtime/output_dir', '16:3'],
  ];

  test('validate reports all of them, in file order, with their positions', () => {
    const r = load(recipe);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.code, d.pointer, position(d)]),
      expected,
    );
    assert.equal(find(r, 'CT0102').suggestion, 'training');
    assert.deepEqual(find(r, 'CT0205').skipped, ['schema check of model.path', 'model directory check of model.path']);
    assert.equal(r.recipe, undefined);
  });

  test('the command line prints the same, as text and as --json, naming the skipped checks', async () => {
    const file = write(tmpProject(), 'every.yaml', recipe);
    const text = await cli(['validate', file]);
    assert.equal(text.code, 1);
    const lines = text.err.split('\n').filter((l) => /^\S.*: error CT/.test(l));
    assert.deepEqual(
      lines.map((l) => /every\.yaml:(\d+:\d+): error (CT\d+)/.exec(l)!.slice(1)),
      expected.map(([code, , at]) => [at, code]),
    );
    assert.match(text.err, /did you mean 'training'\?/);
    assert.match(
      text.err,
      /skipped because of this: schema check of model\.path; model directory check of model\.path/,
    );
    assert.match(
      text.err,
      /skipped because of this: kernel checks of runtime\.kernels; max_steps check of training\.epochs/,
    );
    assert.match(text.err, /7 errors \(5 checks skipped because of them\)/);
    assert.doesNotMatch(text.err, /\n\s+at /);
    const json = await cli(['validate', file, '--json']);
    assert.equal(json.code, 1);
    const out = JSON.parse(json.out) as { ok: boolean; diagnostics: Diagnostic[] };
    assert.equal(out.ok, false);
    assert.deepEqual(
      out.diagnostics.map((d) => [d.code, d.pointer, position(d)]),
      expected,
    );
    assert.ok(out.diagnostics.every((d) => d.location?.file === file));
    assert.deepEqual(out.diagnostics[0].skipped, ['schema check of model.path', 'model directory check of model.path']);
  });

  test('plan stops on the same list', async () => {
    const r = await cli(['plan', write(tmpProject(), 'every.yaml', recipe), '--json']);
    assert.equal(r.code, 1);
    assert.deepEqual(
      JSON.parse(r.out).diagnostics.map((d: Diagnostic) => d.code),
      expected.map(([c]) => c),
    );
  });

  test('an unset variable stops only its own value: its siblings are still checked', () => {
    const r = load(base().replace(`path: ${MODEL}`, 'path: ${CT_TEST_UNSET}/m\n  max_seq_length: 4'));
    assert.deepEqual(codes(r), ['CT0205', 'CT0106']);
    assert.equal(position(find(r, 'CT0106')), '4:3');
  });

  test('a schema error stops only the checks that read its value', () => {
    const r = load(
      base(
        'strategy: {kind: child-tuning-f, reserve_p: 0.2, fisher: {estimator: nope}}\nevaluation: {metrics: [pearson]}\n',
      ).replace('task: glue/rte', 'task: glue/rte\n  subsample: {size: 0}'),
    );
    assert.deepEqual(codes(r), ['CT0106', 'CT0303', 'CT0105', 'CT0310']);
    assert.deepEqual(find(r, 'CT0106').skipped, ['subsample size check of dataset']);
    const both = load(
      base().replace('task: glue/rte', 'task: glue/rte\n  subsample: {size: 0}').replace('glue/RTE', 'glue/NOPE'),
    );
    assert.deepEqual(codes(both), ['CT0106', 'CT0308', 'CT0308'], 'a bad subsample leaves the data files checked');
    const unsetDir = load(base('').replace(`dir: ${RTE}`, 'dir: ${CT_TEST_UNSET_DATA}/RTE\n  subsample: {size: 5000}'));
    assert.deepEqual(codes(unsetDir), ['CT0205']);
    assert.deepEqual(unsetDir.diagnostics[0].skipped, [
      'schema check of dataset.dir',
      'data file and subsample checks of dataset',
    ]);
  });

  test('a misspelled key stands for the key it resembles; the checks of that key wait for the fix', () => {
    const r = load(base('strategy: {kind: child-tuning-d, reserv_p: 0.3}\n'));
    assert.deepEqual(codes(r), ['CT0102']);
    assert.deepEqual(find(r, 'CT0102').skipped, ['reserve_p checks of strategy']);
  });

  test('a base recipe that does not parse: the extending file is still checked, but not for keys the base would supply', () => {
    const r = load(
      'extends: ./b.yaml\ntrainig: {epochs: 2}\nstrategy: {kind: child-tuning-f, reserve_p: 2}\ntraining: {batch_size: 0}\n',
      { files: { 'b.yaml': 'version: 1\nmodel: {path: [\n' } },
    );
    // The unclosed list gives the parser two errors; the second is its echo, counted in the first one's note.
    assert.deepEqual(codes(r), ['CT0102', 'CT0106', 'CT0001']);
    assert.match(find(r, 'CT0001').location!.file, /b\.yaml$/);
    assert.deepEqual(find(r, 'CT0001').skipped, ['required-key checks', 'cross-field and data checks']);
    assert.ok(find(r, 'CT0001').notes!.some((n) => /^1 more syntax error follows \(to line \d+\)/.test(n)));
  });

  test('a top recipe that does not parse names everything it stopped', () => {
    const r = load(base('strategy: {kind: vanilla\n'));
    assert.deepEqual(codes(r), ['CT0001']);
    assert.match(r.diagnostics[0].skipped![0], /^every later phase/);
  });

  test('diagnostics are ordered by file, line and column; exact repeats collapse, keeping what each skipped', () => {
    const at = (file: string, line: number, column: number) => ({ file, line, column });
    const a = diagnostic('CT0106', 'a', '/a', { location: at('base.yaml', 1, 1) });
    const b = diagnostic('CT0106', 'b', '/b', { location: at('top.yaml', 9, 2) });
    const c = diagnostic('CT0106', 'c', '/c', { location: at('top.yaml', 2, 5) });
    const d = diagnostic('CT0204', 'd', '/d', { location: at('--set', 1, 1) });
    const again = { ...c, skipped: ['x'] };
    const out = ordered([d, a, b, c, again], ['top.yaml', 'base.yaml']);
    assert.deepEqual(
      out.map((x) => x.message),
      ['c', 'b', 'a', 'd'],
    );
    assert.deepEqual(out[0].skipped, ['x']);
  });
});

describe('paths, --set and names (issues 13, 14 and 17)', () => {
  test("an absolute path written in a recipe is the user's choice; a relative one must stay in the project", () => {
    assert.deepEqual(codes(load(base('runtime: {output_dir: /tmp/childtune-elsewhere}\n'))), []);
    const r = load(base('runtime: {cache_dir: ../../cache}\n'));
    assert.deepEqual(codes(r), ['CT0203']);
    assert.equal(position(r.diagnostics[0]), '7:11');
    assert.match(r.diagnostics[0].notes![0], /absolute path/);
  });

  test('extends keeps the project-root rule, absolute or relative', () => {
    const outside = write(fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-outside-')), 'base.yaml', base());
    const r = load(`extends: ${outside}\nname: x\n`);
    assert.deepEqual(codes(r), ['CT0203']);
    assert.deepEqual(find(r, 'CT0203').skipped, ['required-key checks', 'cross-field and data checks']);
  });

  test('extends through a symbolic link that leaves the project is refused; one that stays inside is followed', () => {
    const outside = write(fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-outside-')), 'base.yaml', base());
    const dir = tmpProject();
    fs.symlinkSync(outside, path.join(dir, 'linked.yaml'));
    const r = loadRecipe(write(dir, 'r.yaml', 'extends: ./linked.yaml\nname: x\n'), { env: {} });
    assert.deepEqual(codes(r), ['CT0203']);
    assert.equal(position(r.diagnostics[0]), '1:1');
    assert.match(r.diagnostics[0].message, /symbolic link, to .*base\.yaml/);
    write(dir, 'real/base.yaml', base());
    fs.symlinkSync(path.join(dir, 'real', 'base.yaml'), path.join(dir, 'inside.yaml'));
    assert.deepEqual(codes(loadRecipe(write(dir, 'ok.yaml', 'extends: ./inside.yaml\nname: x\n'), { env: {} })), []);
    fs.symlinkSync(path.dirname(outside), path.join(dir, 'outdir'));
    assert.deepEqual(codes(loadRecipe(write(dir, 'via-dir.yaml', 'extends: ./outdir/base.yaml\n'), { env: {} })), [
      'CT0203',
    ]);
  });

  test('--set key=null removes the key: --set switches a child-tuning-d recipe to vanilla', () => {
    const d = base('strategy: {kind: child-tuning-d, reserve_p: 0.3, fisher: {estimator: batch}}\n');
    const switched = load(d, { sets: ['strategy.kind=vanilla', 'strategy.reserve_p=null', 'strategy.fisher=null'] });
    assert.deepEqual(codes(switched), []);
    assert.equal(switched.recipe!.strategy.kind, 'vanilla');
    assert.equal(switched.recipe!.strategy.reserve_p, undefined);
    assert.equal(switched.recipe!.strategy.fisher, undefined);
    const half = load(d, { sets: ['strategy.kind=vanilla'] });
    assert.deepEqual(codes(half), ['CT0303', 'CT0303']);
    assert.match(find(half, 'CT0303', '/strategy/reserve_p').notes![0], /--set strategy\.reserve_p=null/);
    assert.equal(position(find(half, 'CT0303', '/strategy/fisher')), '7:50');
    const name = load(base('name: x\n'), { sets: ['name=null', 'runtime.threads=null', 'sweep.seeds=null'] });
    assert.deepEqual(codes(name), []);
    assert.equal(name.recipe!.name, undefined);
    assert.equal(name.recipe!.runtime.threads, 0, 'a removed key takes its default');
  });

  test('--set null cannot remove one entry of a list', () => {
    const r = load(base('transfer: {task: [{name: t, dataset: {task: glue/rte, dir: ' + RTE + '}}]}\n'), {
      sets: ['transfer.task.0=null'],
    });
    assert.deepEqual(codes(r), ['CT0204']);
    assert.equal(r.diagnostics[0].location?.file, '--set');
    assert.match(r.diagnostics[0].notes![0], /--set transfer\.task=\[/);
  });

  test('--set replaces a value whose ${VAR} is unset, as the CT0205 note says', () => {
    const text = base().replace(`path: ${MODEL}`, 'path: ${CT_TEST_UNSET_MODELS}/bert-tiny-glue-mlm');
    const unset = load(text);
    assert.deepEqual(codes(unset), ['CT0205']);
    assert.match(unset.diagnostics[0].notes![0], /--set model\.path=/);
    const rescued = load(text, { sets: [`model.path=${MODEL}`] });
    assert.deepEqual(codes(rescued), []);
    assert.equal(rescued.recipe!.model.path, MODEL);
    const removed = load(text, { sets: ['model.path=null'] });
    assert.deepEqual(codes(removed), ['CT0103']);
  });

  test('an extending recipe replaces a base value whose ${VAR} is unset', () => {
    const files = { 'b.yaml': base().replace(`path: ${MODEL}`, 'path: ${CT_TEST_UNSET_MODELS}/m') };
    assert.deepEqual(codes(load(`extends: ./b.yaml\nmodel: {path: ${MODEL}}\n`, { files })), []);
    const kept = load('extends: ./b.yaml\nname: x\n', { files });
    assert.deepEqual(codes(kept), ['CT0205']);
    assert.match(kept.diagnostics[0].location!.file, /b\.yaml$/);
    const unsetBase = load('extends: ${CT_TEST_UNSET_BASE}/b.yaml\ntrainig: {}\n', { files });
    assert.deepEqual(codes(unsetBase), ['CT0205', 'CT0102']);
    assert.deepEqual(find(unsetBase, 'CT0205').skipped, ['required-key checks', 'cross-field and data checks']);
  });

  test('a name that is not one file name is rejected with its own code, from the file or --set', () => {
    for (const name of ['../../escape', 'a/b', 'a\\\\b', '..', '.']) {
      const r = load(base(`name: "${name}"\n`));
      assert.deepEqual(codes(r), ['CT0108'], name);
      assert.equal(position(r.diagnostics[0]), '7:1', name);
    }
    const set = load(base(), { sets: ['training.epochs=1', 'name=../x'] });
    assert.deepEqual(codes(set), ['CT0108']);
    assert.deepEqual(set.diagnostics[0].location, { file: '--set', line: 1, column: 2 });
    for (const name of ['glue-rte.v2', '...x', 'lr 2e-5'])
      assert.deepEqual(codes(load(base(`name: "${name}"\n`))), [], name);
  });

  test('childtune init explains the path rule', () => {
    assert.match(STARTER_RECIPE, /absolute/);
    assert.match(STARTER_RECIPE, /extends/);
    assert.match(STARTER_RECIPE, /project/);
  });
});

describe('deep YAML is a bounded-depth diagnostic, never a stack overflow (issue 17)', () => {
  const head = 'version: 1\nname: x\n';
  const cases: [string, string, string][] = [
    // The 33rd bracket from column 8.
    ['flow sequences', head + 'sweep: ' + '['.repeat(5000) + ']'.repeat(5000) + '\n', '3:40'],
    // The 33rd mapping, at column 8 + 32 * 4.
    ['flow mappings', head + 'sweep: ' + '{a: '.repeat(5000) + '1' + '}'.repeat(5000) + '\n', '3:136'],
    ['block sequences on one line', head + 'sweep:\n' + '- '.repeat(5000) + 'x\n', '4:65'],
    // Line 4 + j starts the mapping j + 1 levels below the top one, at column j + 2.
    [
      'block mappings by indentation',
      head + 'sweep:\n' + Array.from({ length: 1200 }, (_, i) => ' '.repeat(i + 1) + 'k:').join('\n') + ' 1\n',
      '36:34',
    ],
  ];
  for (const [what, text, at] of cases) {
    test(what, () => {
      const r = parseRecipeText(text, 'deep.yaml');
      assert.deepEqual(codes(r), ['CT0004']);
      assert.equal(position(r.diagnostics[0]), at);
      assert.match(r.diagnostics[0].message, /deeper than 32 levels/);
    });
  }

  test('aliases that nest deeper than the limit, or inside themselves', () => {
    const chain = Array.from({ length: 8 }, (_, i) =>
      i === 0 ? 'l0: &l0 [[[[[[x]]]]]]' : `l${i}: &l${i} [[[[[[*l${i - 1}]]]]]]`,
    ).join('\n');
    const r = parseRecipeText(`version: 1\nsweep:\n  grid:\n${chain.replace(/^/gm, '    ')}\n`, 'alias.yaml');
    // Each *lK sits 9 levels down (sweep, grid, the next key, six brackets) and expands to 6 (K + 1) levels of
    // lists: *l3's deepest list is 32 levels down, *l4's 38, and so on.
    assert.deepEqual(codes(r), ['CT0004', 'CT0004', 'CT0004']);
    assert.match(r.diagnostics[0].message, /alias \*l4 nests the recipe deeper than 32 levels/);
    assert.equal(position(r.diagnostics[0]), '9:19');
    const self = parseRecipeText('version: 1\nname: &a [*a]\n', 'self.yaml');
    assert.deepEqual(codes(self), ['CT0004']);
    assert.match(self.diagnostics[0].message, /refers to a value that contains it/);
    assert.equal(position(self.diagnostics[0]), '2:11');
    assert.deepEqual(codes(parseRecipeText('version: 1\na: &a [[x]]\nb: [*a, *a]\n', 'ok.yaml')), []);
  });

  test('a list or mapping used as a key is a diagnostic, not a warning on stderr', () => {
    const r = parseRecipeText('version: 1\n{a: 1}: x\n', 'key.yaml');
    assert.deepEqual(codes(r), ['CT0001']);
    assert.equal(position(r.diagnostics[0]), '2:1');
  });

  test('a repeated key and a second document are syntax errors at their positions', () => {
    const dup = parseRecipeText('version: 1\nmodel: {path: a, path: b}\n', 'dup.yaml');
    assert.deepEqual(codes(dup), ['CT0001']);
    assert.equal(position(dup.diagnostics[0]), '2:18');
    assert.match(dup.diagnostics[0].message, /key 'path' appears twice .*first on line 2/);
    const two = parseRecipeText('version: 1\n---\nversion: 1\n', 'two.yaml');
    assert.deepEqual(codes(two), ['CT0001']);
    assert.equal(position(two.diagnostics[0]), '2:1');
  });

  test('the command line answers a deep recipe with the diagnostic and exit 1', async () => {
    const file = write(tmpProject(), 'deep.yaml', base('sweep: ' + '['.repeat(20000) + ']'.repeat(20000) + '\n'));
    const r = await cli(['validate', file]);
    assert.equal(r.code, 1);
    assert.match(r.err, /deep\.yaml:7:40: error CT0004 recipe-too-deep/);
    assert.doesNotMatch(r.err, /Maximum call stack|looks like a bug/);
    const self = await cli(['validate', write(tmpProject(), 'self.yaml', base('sweep: {seeds: &s [1, *s]}\n'))]);
    assert.equal(self.code, 1);
    assert.match(self.err, /CT0004 recipe-too-deep: alias \*s refers to a value that contains it/);
  });
});

test('a YAML syntax error is reported once with a count of its echoes, and an unquoted ${VAR} in a flow mapping is explained', () => {
  const dir = tmpProject();
  const file = write(
    dir,
    'r.yaml',
    'version: 1\nmodel: {path: ${M}}\ndataset: {task: glue/rte}\nstrategy: {kind: vanilla}\n',
  );
  const { diagnostics } = loadRecipe(file);
  assert.deepEqual(
    diagnostics.map((d) => d.code),
    ['CT0001'],
  );
  assert.deepEqual([diagnostics[0].location!.line, diagnostics[0].location!.column], [2, 16]);
  assert.ok(diagnostics[0].notes!.some((n) => n.includes('must be quoted: {path: "${VAR}"}')));
  assert.ok(diagnostics[0].notes!.some((n) => /^\d+ more syntax errors follow \(to line 4\)/.test(n)));
});
