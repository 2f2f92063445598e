import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadSplit } from '../src/data/load.js';
import { subsampleIndices } from '../src/data/subsample.js';
import { TASKS } from '../src/data/tasks.js';
import { readSafetensors } from '../src/engine/safetensors.js';
import { cli, FIXTURES, GLUE, REPO } from './helpers.js';

const ASSETS = path.join(REPO, 'assets');
const BIN = path.join(REPO, 'bin', 'childtune.js');

/** The environment of a user who set none of childtune's variables. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env))
    if (k.startsWith('CHILDTUNE_') || (k.startsWith('npm_') && !k.startsWith('npm_config_')) || k === 'INIT_CWD')
      delete env[k];
  return env;
}

const childtune = (args: string[], cwd: string, env = userEnv()) =>
  spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8' });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-user-'));

describe('the quickstart ships what it needs', () => {
  test('assets/ holds the pretrained fixture as F16 (each value rounded to nearest), well under 20 MB in all', () => {
    const f32 = readSafetensors(path.join(FIXTURES, 'bert-tiny-glue-mlm', 'model.safetensors'));
    const f16 = readSafetensors(path.join(ASSETS, 'bert-tiny-glue-mlm', 'model.safetensors'));
    assert.deepEqual([...f16.keys()].sort(), [...f32.keys()].sort());
    for (const [name, t] of f16) {
      assert.equal(t.dtype, 'F16', name);
      assert.deepEqual(t.shape, f32.get(name)!.shape, name);
      const original = f32.get(name)!.data;
      for (let i = 0; i < original.length; i++) {
        const x = original[i];
        // Half the spacing of binary16 numbers around x (subnormal below 2^-14).
        const halfUlp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x) || 2 ** -24)), -14) - 11);
        if (!(Math.abs(t.data[i] - x) <= halfUlp)) assert.fail(`${name}[${i}]: ${x} stored as ${t.data[i]}`);
      }
    }
    for (const f of ['config.json', 'vocab.txt'])
      assert.deepEqual(
        fs.readFileSync(path.join(ASSETS, 'bert-tiny-glue-mlm', f)),
        fs.readFileSync(path.join(FIXTURES, 'bert-tiny-glue-mlm', f)),
      );
    const size = (p: string): number =>
      fs.statSync(p).isDirectory()
        ? fs.readdirSync(p).reduce((a, f) => a + size(path.join(p, f)), 0)
        : fs.statSync(p).size;
    assert.ok(size(ASSETS) < 12e6, `assets/ is ${size(ASSETS)} bytes`);
  });

  test("the SST-2 sample is exactly the quickstart's subsample of the full training set; the dev set is unchanged", () => {
    const full = loadSplit(TASKS['glue/sst-2'], path.join(GLUE, 'SST-2'), 'train');
    const sample = loadSplit(TASKS['glue/sst-2'], path.join(ASSETS, 'data', 'glue', 'SST-2'), 'train');
    const chosen = subsampleIndices(full.examples, 1000, 0, true).map((i) => full.examples[i]);
    assert.deepEqual(
      sample.examples.map((e) => [e.textA, e.label]),
      chosen.map((e) => [e.textA, e.label]),
    );
    assert.deepEqual(
      subsampleIndices(sample.examples, 1000, 0, true),
      sample.examples.map((_, i) => i),
      'the recipe keeps all 1,000, in order',
    );
    assert.deepEqual(
      fs.readFileSync(path.join(ASSETS, 'data', 'glue', 'SST-2', 'dev.tsv')),
      fs.readFileSync(path.join(GLUE, 'SST-2', 'dev.tsv')),
    );
    assert.match(fs.readFileSync(path.join(ASSETS, 'README.md'), 'utf8'), /Socher[\s\S]*Licence: /);
  });
});

describe('CLI habits', () => {
  const version = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version;

  test('--version and -V print the package version', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.out.trim(), version);
    }
    const bin = childtune(['--version'], tmp());
    assert.equal(bin.status, 0, bin.stderr);
    assert.equal(bin.stdout.trim(), version);
  });

  test('npm ci builds the bin (prepare runs the build); an unbuilt checkout gets one clear line, not a stack trace', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    assert.equal(pkg.scripts.prepare, 'npm run build');
    assert.equal(pkg.bin.childtune, 'bin/childtune.js');
    const unbuilt = tmp();
    fs.mkdirSync(path.join(unbuilt, 'bin'));
    fs.copyFileSync(BIN, path.join(unbuilt, 'bin', 'childtune.js'));
    const r = spawnSync(process.execPath, [path.join(unbuilt, 'bin', 'childtune.js'), '--version'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^error: childtune is not built \(dist\/ is missing\)\n  hint: run `npm run build`/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test('recipes lists names with one-line descriptions, runnable from any directory', async () => {
    const r = await cli(['recipes']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^quickstart +Child-Tuning-D on 1,000 SST-2 sentences/m);
    assert.match(r.out, /^paper\/glue\/rte +Paper, main table: GLUE RTE/m);
    assert.doesNotMatch(r.out, /recipes\/|\.yaml/);
    const json = JSON.parse((await cli(['recipes', '--json'])).out);
    assert.ok(
      json.every(
        (x: { name: string; file: string; summary: string }) => fs.existsSync(x.file) && x.summary.length > 10,
      ),
      'every recipe has a file and a description',
    );
  });

  test('a bundled recipe runs by name from another directory; its runs and cache go there; the quickstart ends with the score and next steps', () => {
    const cwd = tmp();
    assert.equal(childtune(['validate', 'quickstart'], cwd).stdout, 'quickstart: ok\n');
    // A short run: 32 examples, one epoch, sequences of 32.
    const short = [
      '--set',
      'dataset.subsample.size=32',
      '--set',
      'training.epochs=1',
      '--set',
      'model.max_seq_length=32',
    ];
    const r = childtune(['run', 'quickstart', ...short], cwd);
    assert.equal(r.status, 0, r.stderr);
    const [summary, ...rest] = r.stdout.split('\n');
    const [, dir, accuracy] = /^(\S+): accuracy=(0\.\d{4})$/.exec(summary)!;
    assert.ok(Number(accuracy) > 0);
    assert.equal(path.dirname(dir), path.join(cwd, 'runs'));
    assert.ok(fs.existsSync(path.join(dir, 'results.json')));
    assert.ok(
      fs.readdirSync(path.join(cwd, '.childtune', 'cache')).length > 0,
      'the fisher cache is under the working directory',
    );
    const next = rest.join('\n');
    for (const command of [
      `npx childtune report ${path.relative(cwd, dir)}`,
      'npx childtune sweep quickstart',
      'npx childtune fetch',
      `tensorboard --logdir ${path.relative(cwd, dir)}/tb`,
    ])
      assert.ok(next.includes(command), command);
    const plan = childtune(['plan', 'quickstart', ...short], cwd);
    assert.match(plan.stdout, /fisher .*\[cached\]/);
  });

  test('an unknown recipe name is one error with the closest name', () => {
    const r = childtune(['run', 'quikstart'], tmp());
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      "error: no recipe file 'quikstart' and no bundled recipe of that name\n  hint: Did you mean 'quickstart'? `childtune recipes` lists the bundled recipes; a file path must exist.\n",
    );
  });

  test('every bundled recipe reads CHILDTUNE_MODEL and CHILDTUNE_DATA; unset, the error names each and what it holds', () => {
    for (const file of fs
      .readdirSync(path.join(REPO, 'recipes'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.yaml'))) {
      const names = [...fs.readFileSync(path.join(REPO, 'recipes', file), 'utf8').matchAll(/\$\{(\w+)/g)].map(
        (m) => m[1],
      );
      assert.ok(
        names.every((n) => n === 'CHILDTUNE_MODEL' || n === 'CHILDTUNE_DATA'),
        `${file}: ${names}`,
      );
    }
    const r = childtune(['validate', 'paper/glue/rte'], tmp());
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /error CT0205 undefined-variable: environment variable CHILDTUNE_MODEL is not set \(at \/model\/path\)\n  note: CHILDTUNE_MODEL holds a model: a Hugging Face model directory/,
    );
    assert.match(
      r.stderr,
      /environment variable CHILDTUNE_DATA is not set \(at \/dataset\/dir\)\n  note: CHILDTUNE_DATA holds the data root: the directory holding glue\/<TASK>\//,
    );
    const set = childtune(['validate', 'paper/glue/rte'], tmp(), {
      ...userEnv(),
      CHILDTUNE_MODEL: path.join(FIXTURES, 'bert-tiny-glue-mlm'),
      CHILDTUNE_DATA: path.dirname(GLUE),
    });
    assert.equal(set.status, 0, set.stderr);
  });
});

describe('a fresh clone with nothing beside it', () => {
  test(
    "runs the README's first command, `npm ci && npm run quickstart`, and prints a score",
    { timeout: 600_000 },
    (t) => {
      const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
      assert.match(readme, /```sh\nnpm ci && npm run quickstart /, "the README's first command");
      const home = tmp();
      const clone = path.join(home, 'childtune');
      t.after(() => fs.rmSync(home, { recursive: true, force: true }));
      const git = spawnSync('git', ['clone', '--quiet', REPO, clone], { encoding: 'utf8' });
      assert.equal(git.status, 0, git.stderr);
      assert.deepEqual(fs.readdirSync(home), ['childtune'], 'nothing beside the clone');
      // --prefer-offline and no audit: the same install from the npm cache, without the network round trips.
      const r = spawnSync(
        'bash',
        ['-c', 'npm ci --prefer-offline --no-audit --no-fund && npm run quickstart && npx childtune --version'],
        { cwd: clone, env: userEnv(), encoding: 'utf8', timeout: 590_000 },
      );
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /runs\/quickstart-\d{8}-\d{6}: accuracy=0\.\d{4}\n/);
      assert.match(r.stdout, /Next steps:/);
      assert.match(r.stderr, /model: ignored 5 pretraining-head tensors/);
    },
  );
});
