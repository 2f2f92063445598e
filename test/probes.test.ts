import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { confined, freshDirectory, slugify } from '../src/run/rundir.js';
import { cli, write } from './helpers.js';
import { assertClean, smallProject } from './integrity-helpers.js';

/** A model directory whose config.json is the tiny one with `changes` applied (no weights needed to be refused). */
function hugeConfig(dir: string, name: string, changes: Record<string, number>) {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'config.json'), 'utf8'));
  write(dir, `${name}/config.json`, JSON.stringify({ ...config, ...changes }));
  for (const f of ['vocab.txt', 'model.safetensors'])
    fs.copyFileSync(path.join(dir, 'model', f), path.join(dir, name, f));
  return path.join(dir, name);
}

/** Everything under a directory with its content, to show nothing was lost or changed. */
const snapshot = (dir: string) =>
  (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((f) => {
    const full = path.join(dir, f);
    return fs.statSync(full).isFile() ? `${f}:${fs.readFileSync(full).toString('base64')}` : f;
  });

test("the issue's probes: each a clear message and exit code, no stack trace, nothing on disk lost", async () => {
  const { dir, recipe } = await smallProject();
  const before = snapshot(path.join(dir, 'model'));
  write(dir, 'a-file', 'in the way');
  const probes: { name: string; args: string[]; code: number; message: RegExp; check?: () => void }[] = [
    {
      name: 'hidden_size 100000',
      code: 1,
      message: /the (fisher|train) stage needs about [\d.]+ GiB \(weights .*\) but this machine has [\d.]+ GiB/,
      args: [
        'run',
        recipe,
        '--set',
        `model.path=${hugeConfig(dir, 'wide', { hidden_size: 100000, num_attention_heads: 2 })}`,
        '--set',
        `runtime.output_dir=${path.join(dir, 'wide-runs')}`,
      ],
      check: () => {
        const [run] = fs.readdirSync(path.join(dir, 'wide-runs'));
        const error = JSON.parse(fs.readFileSync(path.join(dir, 'wide-runs', run, 'error.json'), 'utf8'));
        assert.equal(error.stage, 'setup', 'error.json names a stage even before the first one ran');
        assert.ok(
          !fs.existsSync(path.join(dir, 'wide-runs', run, 'plan.json')),
          'refused before anything was allocated or written',
        );
      },
    },
    {
      name: 'vocab_size 1e9',
      code: 1,
      message: /needs about [\d.]+ GiB .* but this machine has/,
      args: ['run', recipe, '--set', `model.path=${hugeConfig(dir, 'vocab', { vocab_size: 1e9 })}`],
    },
    {
      name: 'num_hidden_layers 10000',
      code: 1,
      message: /needs about [\d.]+ GiB .* but this machine has/,
      args: [
        'run',
        recipe,
        '--set',
        `model.path=${hugeConfig(dir, 'deep', { num_hidden_layers: 10000 })}`,
        '--set',
        'model.max_seq_length=512',
        '--set',
        'training.batch_size=64',
      ],
    },
    {
      name: 'fractional hidden_size',
      code: 1,
      message: /'hidden_size' must be a whole number of at least 1 \(found 127\.5\)/,
      args: ['plan', recipe, '--set', `model.path=${hugeConfig(dir, 'frac', { hidden_size: 127.5 })}`],
    },
    {
      name: 'plan of a model beyond this machine',
      code: 0,
      message:
        /warning: the train stage needs about [\d.]+ GiB .* but this machine has [\d.]+ GiB; `run` will refuse it/,
      args: ['plan', recipe, '--set', `model.path=${path.join(dir, 'vocab')}`],
    },
    {
      name: 'cache_dir is a file',
      code: 1,
      message: /cache directory .*a-file is not writable \((EEXIST|ENOTDIR)\)\n  hint: Set runtime.cache_dir/,
      args: [
        'run',
        recipe,
        '--set',
        `runtime.cache_dir=${path.join(dir, 'a-file')}`,
        '--set',
        `runtime.output_dir=${path.join(dir, 'cache-probe')}`,
      ],
      check: () => {
        const [run] = fs.readdirSync(path.join(dir, 'cache-probe'));
        const error = JSON.parse(fs.readFileSync(path.join(dir, 'cache-probe', run, 'error.json'), 'utf8'));
        assert.equal(error.stage, 'fisher');
        assert.equal(error.state, 'failed');
      },
    },
    {
      name: 'output_dir is a file',
      code: 1,
      message: /cannot create output directory .*a-file: a file is in the way/,
      args: ['run', recipe, '--set', `runtime.output_dir=${path.join(dir, 'a-file')}`],
    },
    {
      name: 'a name that climbs out of output_dir (refused by validate; the run layer also confines derived paths)',
      code: 1,
      message: /CT0108 name-not-a-file-name/,
      args: [
        'run',
        recipe,
        '--quiet',
        '--set',
        'name=../../x/../y/escape',
        '--set',
        `runtime.output_dir=${path.join(dir, 'confined')}`,
      ],
      check: () =>
        assert.deepEqual(
          fs.readdirSync(dir).filter((f) => /escape/.test(f)),
          [],
        ),
    },
  ];
  for (const p of probes) {
    const r = await cli(p.args);
    assert.equal(r.code, p.code, `${p.name}: ${r.err}`);
    assert.match(r.out + r.err, p.message, p.name);
    assertClean(r.err);
    p.check?.();
  }
  assert.deepEqual(snapshot(path.join(dir, 'model')), before, 'the model directory is untouched');
  assert.equal(fs.readFileSync(path.join(dir, 'a-file'), 'utf8'), 'in the way');
});

test('when error.json cannot be written either, the original failure still reaches the user', async () => {
  const { dir, recipe } = await smallProject('sweep: {seeds: [1]}\n');
  const emitted = await cli(['sweep', recipe, '--emit', 'slurm']);
  const lock = path.join(path.dirname(emitted.out.trim()), 'sweep.lock.json');
  // Directories where plan.json and error.json go make both writes fail, as a full disk would.
  fs.mkdirSync(path.join(path.dirname(lock), 'trial-000', 'plan.json'), { recursive: true });
  fs.mkdirSync(path.join(path.dirname(lock), 'trial-000', 'error.json'));
  const r = await cli(['run', '--trial', '0', lock]);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /cannot write .*plan\.json: .* \(and .*error\.json could not be written: cannot write .*error\.json/,
  );
  assertClean(r.err);
  assert.ok(fs.existsSync(path.join(dir, 'model', 'model.safetensors')));
});

test('sweep --emit slurm quotes every value: hostile paths reach a stub sbatch intact and nothing in them runs', async () => {
  const { dir, recipe } = await smallProject('sweep: {seeds: [1, 2]}\n');
  const hostile = 'out $(touch PWNED1) `touch PWNED2` \'q" \\$HOME';
  const emitted = await cli([
    'sweep',
    recipe,
    '--emit',
    'slurm',
    '--set',
    `runtime.output_dir=${path.join(dir, hostile)}`,
    '--set',
    'name=n$(touch PWNED3)`touch PWNED4`',
  ]);
  assert.equal(emitted.code, 0, emitted.err);
  const script = emitted.out.trim();
  const lock = path.join(path.dirname(script), 'sweep.lock.json');
  assert.ok(fs.existsSync(lock));
  assert.equal(path.dirname(path.dirname(lock)), path.join(dir, hostile), 'the sweep stays in its output directory');
  // sbatch records its arguments and runs each --wrap command as the job's shell would; childtune records its own.
  const bin = path.join(dir, 'stub-bin');
  write(
    bin,
    'sbatch',
    `#!/bin/bash
for a in "$@"; do printf '%s\\0' "$a" >> "$STUB_LOG/sbatch.args"; done
printf '\\n' >> "$STUB_LOG/sbatch.args"
for a in "$@"; do case $a in --wrap=*) SLURM_ARRAY_TASK_ID=1 bash -c "\${a#--wrap=}";; esac; done
echo 4242
`,
  );
  write(
    bin,
    'childtune',
    `#!/bin/bash
for a in "$@"; do printf '%s\\0' "$a" >> "$STUB_LOG/childtune.args"; done
printf '\\n' >> "$STUB_LOG/childtune.args"
`,
  );
  fs.chmodSync(path.join(bin, 'sbatch'), 0o755);
  fs.chmodSync(path.join(bin, 'childtune'), 0o755);
  const logs = fs.mkdtempSync(path.join(dir, 'logs-'));
  const submitted = spawnSync('bash', [script], {
    cwd: logs,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, STUB_LOG: logs },
    encoding: 'utf8',
  });
  assert.equal(submitted.status, 0, submitted.stderr);
  const calls = (file: string) =>
    fs
      .readFileSync(path.join(logs, file), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('\0').filter(Boolean));
  assert.deepEqual(calls('childtune.args'), [
    ['sweep', '--prepare', lock],
    ['run', '--trial', '1', lock],
  ]);
  const sbatch = calls('sbatch.args');
  assert.equal(sbatch.length, 2);
  assert.ok(sbatch[1].includes('--dependency=afterok:4242'));
  assert.ok(sbatch[1].includes('--array=0-1'));
  const found = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) =>
    /^PWNED\d$/.test(path.basename(f)),
  );
  assert.deepEqual(found, [], 'nothing in a name or path ran');
});

test('the run layer confines derived directories whatever name reaches it (validate refuses such names first)', () => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-confine-'));
  const dir = freshDirectory(parent, '../../x/../y/escape');
  assert.equal(path.dirname(dir), parent);
  assert.match(path.basename(dir), /^x-y-escape-\d{8}-\d{6}$/);
  assert.equal(slugify('$(touch pwned)`id`'), 'touch-pwned-id');
  assert.throws(() => confined(parent, '../outside'), /would leave/);
  assert.throws(() => confined(parent, 'a/b'), /would leave/);
});
