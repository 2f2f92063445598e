import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { StageCache } from '../src/run/cache.js';
import { RunError } from '../src/run/errors.js';
import { DirLock } from '../src/run/lock.js';
import { confined, freshDirectory, slugify } from '../src/run/rundir.js';
import { cli, tmpProject, write } from './helpers.js';
import { assertClean, smallProject } from './integrity-helpers.js';
import { fakeRun } from './report-fixtures.js';

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

describe("issue 29's hangs and crashes: each refused at once with one clear message", () => {
  test("validate reads config.json with the plan's bounds (naming the file, the key and the fix); plan refuses the same", async () => {
    const { dir, recipe } = await smallProject();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ hidden_size: 0 }, /'hidden_size' must be a whole number of at least 1 \(found 0\)/],
      [{ num_attention_heads: -2 }, /'num_attention_heads' must be a whole number of at least 1 \(found -2\)/],
      [{ intermediate_size: 511.5 }, /'intermediate_size' must be a whole number of at least 1 \(found 511\.5\)/],
      [{ vocab_size: '300' }, /'vocab_size' must be a number \(found "300"\)/],
      [{ num_hidden_layers: 1e9 }, /'num_hidden_layers' is 1000000000; childtune takes at most 10000 layers/],
    ];
    for (const [i, [change, message]] of cases.entries()) {
      const model = hugeConfig(dir, `config-${i}`, change as Record<string, number>);
      for (const command of ['validate', 'plan']) {
        const r = await cli([command, recipe, '--set', `model.path=${model}`]);
        assert.equal(r.code, 1, `${command} ${JSON.stringify(change)}: ${r.err}`);
        assert.match(r.err, /error CT0309 model-dir-invalid: .*config-\d\/config\.json: /);
        assert.match(r.err, message);
        assert.match(r.err, /note: Correct '\w+' in config\.json/);
        assertClean(r.err);
      }
    }
  });

  test('a recipe is read only from a regular file and never past the size limit: /dev/zero, a named pipe', async () => {
    const dir = tmpProject();
    const zero = await cli(['validate', '/dev/zero']);
    assert.equal(zero.code, 1);
    assert.match(
      zero.err,
      /error CT0006 file-unreadable: cannot read recipe '\/dev\/zero': not a regular file \(a device\)/,
    );
    const fifo = path.join(dir, 'base.yaml');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const extending = write(dir, 'r.yaml', 'extends: ./base.yaml\nversion: 1\n');
    const piped = await cli(['validate', extending]);
    assert.equal(piped.code, 1);
    assert.match(
      piped.err,
      /r\.yaml:1:1: error CT0201 extends-not-found: .*base\.yaml': not a regular file \(a named pipe\)/,
    );
    const big = write(dir, 'big.yaml', `version: 1\nname: "${'x'.repeat(3 << 20)}"\n`);
    const large = await cli(['validate', big]);
    assert.ok(
      large.err.includes(
        `error CT0003 recipe-too-large: recipe is ${fs.statSync(big).size} bytes; the limit is 1048576`,
      ),
      large.err,
    );
    for (const r of [zero, piped, large]) assertClean(r.err);
  });

  test('a sweep past 10,000 trials is refused by validate at the sweep block, and by plan, before it is expanded', async () => {
    const values = (n: number) => `[${Array.from({ length: n }, (_, i) => i + 1).join(', ')}]`;
    const { recipe } = await smallProject(
      `sweep:\n  grid: {training.epochs: ${values(100)}, training.batch_size: ${values(100)}}\n  seeds: ${values(100)}\n`,
    );
    for (const command of ['validate', 'plan']) {
      const r = await cli([command, recipe]);
      assert.equal(r.code, 1, r.err);
      assert.match(
        r.err,
        /r\.yaml:8:1: error CT0311 sweep-too-large: the sweep expands to 1,000,000 trials; the limit is 10,000/,
      );
      assert.match(r.err, /100 values of training\.epochs x 100 values of training\.batch_size x 100 seeds/);
      assertClean(r.err);
    }
  });

  test('an unreadable run.lock (empty, damaged, pid 0) is taken over like a dead owner, with a log line', () => {
    for (const text of ['', '{"pid": 0', '0', '{"pid": -1, "host": "h"}']) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-lock-'));
      write(dir, 'run.lock', text);
      const logs: string[] = [];
      const lock = DirLock.acquire(dir, (l) => logs.push(l));
      assert.match(
        logs.join('\n'),
        /lock: took over .*run\.lock, which was unreadable \((empty|not a lock record)\)/,
        text,
      );
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'run.lock'), 'utf8')).pid, process.pid);
      lock.release();
      assert.ok(!fs.existsSync(path.join(dir, 'run.lock')));
    }
  });

  test('places that cannot be written: output_dir in /proc, report --out under a file, a cache without room', async () => {
    const { dir, recipe } = await smallProject();
    write(dir, 'a-file', 'in the way');
    if (fs.existsSync('/proc/self')) {
      const r = await cli(['run', recipe, '--set', 'runtime.output_dir=/proc/childtune-probe/runs']);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /cannot create output directory \/proc\/childtune-probe\/runs: the directory above it accepts no new entries .*\n {2}hint: Set runtime\.output_dir/,
      );
      assertClean(r.err);
    }
    fakeRun(path.join(dir, 'fake'), { task: 'glue/rte', strategy: 'vanilla', seed: 1, score: 0.6 });
    const report = await cli(['report', path.join(dir, 'fake'), '--out', path.join(dir, 'a-file', 'report')]);
    assert.equal(report.code, 1);
    assert.match(
      report.err,
      /cannot create report directory .*a-file\/report\/figures: a file is in the way\n {2}hint: Pass --out/,
    );
    assertClean(report.err);
    assert.equal(fs.readFileSync(path.join(dir, 'a-file'), 'utf8'), 'in the way');
    const cache = new StageCache(path.join(dir, 'cache'));
    cache.checkWritable();
    assert.throws(
      () => cache.checkSpace('fisher', 2 ** 62),
      (e: unknown) =>
        e instanceof RunError &&
        /^cache directory .*cache has [\d.]+ [KMG]iB free, but the fisher stage's entry needs about [\d.]+ GiB$/.test(
          e.message,
        ) &&
        /set runtime\.cache_dir to a directory with room/.test(e.hint!),
    );
    cache.checkSpace('fisher', 1024);
  });

  test('model init refuses a directory that already holds a config.json unless --force', async () => {
    const dir = tmpProject();
    const out = write(dir, 'model/config.json', '{"model_type": "bert"}');
    const refused = await cli(['model', 'init', '--out', path.dirname(out)]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      /model: already holds a model \(config\.json\)\n {2}hint: .*pass --force to overwrite it/,
    );
    assertClean(refused.err);
    assert.equal(fs.readFileSync(out, 'utf8'), '{"model_type": "bert"}', 'nothing written');
    assert.ok(!fs.existsSync(path.join(dir, 'model', 'model.safetensors')));
    const forced = await cli(['model', 'init', '--out', path.dirname(out), '--force']);
    assert.equal(forced.code, 0, forced.err);
    assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).num_hidden_layers, 2);
  });
});
