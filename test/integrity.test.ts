import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { compilePlan } from '../src/plan/compiler.js';
import { weightFilesFingerprint as weightsFingerprint } from '../src/plan/fingerprint.js';
import { loadRecipe } from '../src/recipe/index.js';
import { StageCache } from '../src/run/cache.js';
import { readChildMask } from '../src/run/child-mask.js';
import { executeTrial } from '../src/run/executor.js';
import { startTimeOf } from '../src/engine/process.js';
import { DirLock } from '../src/run/lock.js';
import { RunDir } from '../src/run/rundir.js';
import { getBit } from '../src/engine/bitset.js';
import { cli, write } from './helpers.js';
import { metricsLog } from './strategy-checks.js';
import { assertClean, outcome, smallProject } from './integrity-helpers.js';

/** Multiplies one float32 tensor of a safetensors file in place: same size, same header, new values. */
function scaleTensor(file: string, name: string, factor: number) {
  const buf = fs.readFileSync(file);
  const headerLength = Number(buf.readBigUInt64LE(0));
  const info = JSON.parse(buf.subarray(8, 8 + headerLength).toString())[name];
  const [lo, hi] = info.data_offsets.map((o: number) => 8 + headerLength + o);
  const values = new Float32Array(buf.buffer.slice(buf.byteOffset + lo, buf.byteOffset + hi));
  for (let i = 0; i < values.length; i++) values[i] *= factor;
  Buffer.from(values.buffer).copy(buf, lo);
  fs.writeFileSync(file, buf);
}

const quiet = { log() {}, stage: () => ({ tick() {}, end() {} }) };

/** The fisher stage of a recipe: its planned hash and its output (the cache entry), computed into a fresh cache. */
async function fisherOf(recipe: string, sets: string[]) {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-cache-'));
  const loaded = loadRecipe(recipe, { sets: [...sets, `runtime.cache_dir=${cache}`], allowedRoots: [] });
  const { plan, recipes, diagnostics } = compilePlan(loaded, recipe);
  assert.ok(plan, JSON.stringify(diagnostics));
  const trial = plan.trials[0];
  const scratch = RunDir.at(fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-scratch-')));
  try {
    await executeTrial(plan, trial, recipes[0], scratch, quiet, { stopAfterFisher: true });
  } finally {
    scratch.unlock();
  }
  const hash = plan.stages.find((s) => s.id === trial.fisher)!.hash;
  const entries = fs.readdirSync(path.join(cache, 'fisher'));
  assert.deepEqual(entries, [hash], 'the run keys the cache by the planned hash');
  const read = (f: string) => fs.readFileSync(path.join(cache, 'fisher', hash, f)).toString('base64');
  return { hash, output: read('mask.bin') + read('stats.json') };
}

describe('the fisher stage hash changes exactly when its output does', () => {
  test('each input perturbed in turn', async () => {
    const { dir, recipe } = await smallProject();
    // A second model without a classification head of the task's shape: there the training seed draws it.
    assert.equal(
      (await cli(['model', 'init', '--size', 'tiny', '--labels', '3', '--out', path.join(dir, 'model3')])).code,
      0,
    );
    const base = await fisherOf(recipe, []);
    const model3 = `model.path=${path.join(dir, 'model3')}`;
    const base3 = await fisherOf(recipe, [model3]);
    const edit = (file: string, fn: (text: string) => string) => {
      const before = fs.readFileSync(file);
      fs.writeFileSync(file, fn(before.toString()));
      return () => fs.writeFileSync(file, before);
    };
    const cases: {
      name: string;
      sets?: string[];
      mutate?: () => () => void;
      against?: typeof base;
      changes: boolean;
    }[] = [
      { name: 'training seed, head in the checkpoint', sets: ['training.seed=5'], changes: false },
      { name: 'training seed, fresh head', sets: [model3, 'training.seed=5'], against: base3, changes: true },
      { name: 'thread count', sets: ['runtime.threads=2'], changes: true },
      { name: 'fisher dropout seed', sets: ['strategy.fisher.seed=3'], changes: true },
      { name: 'reserve_p', sets: ['strategy.reserve_p=0.5'], changes: true },
      { name: 'max_seq_length', sets: ['model.max_seq_length=8'], changes: true },
      { name: 'learning rate (not read by the stage)', sets: ['training.optimizer.lr=0.5'], changes: false },
      { name: 'evaluation batch size (not read by the stage)', sets: ['evaluation.batch_size=4'], changes: false },
      {
        name: 'output directory (not read by the stage)',
        sets: [`runtime.output_dir=${path.join(dir, 'elsewhere')}`],
        changes: false,
      },
      {
        name: 'one weight tensor scaled in place (same size and header)',
        changes: true,
        mutate: () => {
          const file = path.join(dir, 'model', 'model.safetensors');
          const before = fs.readFileSync(file);
          scaleTensor(file, 'bert.encoder.layer.1.attention.self.query.weight', 3);
          return () => fs.writeFileSync(file, before);
        },
      },
      {
        name: 'weights rewritten with identical content',
        changes: false,
        mutate: () => {
          const file = path.join(dir, 'model', 'model.safetensors');
          fs.writeFileSync(file, fs.readFileSync(file));
          fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
          return () => {};
        },
      },
      {
        name: 'one training label',
        mutate: () =>
          edit(path.join(dir, 'data', 'train.tsv'), (t) => t.replace(/\tnot_entailment\n/, '\tentailment\n')),
        changes: true,
      },
      {
        name: 'a dev row (not read by the stage)',
        mutate: () => edit(path.join(dir, 'data', 'dev.tsv'), (t) => t.replace(/\tnot_entailment\n/, '\tentailment\n')),
        changes: false,
      },
    ];
    for (const c of cases) {
      const restore = c.mutate?.();
      try {
        const got = await fisherOf(recipe, c.sets ?? []);
        const against = c.against ?? base;
        assert.equal(
          got.output !== against.output,
          c.changes,
          `${c.name}: the output ${c.changes ? 'should' : 'should not'} change`,
        );
        assert.equal(
          got.hash !== against.hash,
          c.changes,
          `${c.name}: the hash must change exactly when the output does`,
        );
      } finally {
        restore?.();
      }
    }
  });
});

test('weights are identified by the full content of every weight file the loader reads, symlinks (hub-cache snapshots) followed', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-weights-'));
  const blobs = path.join(dir, 'blobs');
  const snapshot = path.join(dir, 'snapshot');
  write(blobs, 'a', 'x'.repeat(10_000_000));
  write(blobs, 'b', 'second shard');
  write(
    blobs,
    'index',
    JSON.stringify({
      weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' },
    }),
  );
  fs.mkdirSync(snapshot);
  fs.symlinkSync(path.join(blobs, 'a'), path.join(snapshot, 'model-00001-of-00002.safetensors'));
  fs.symlinkSync(path.join(blobs, 'b'), path.join(snapshot, 'model-00002-of-00002.safetensors'));
  fs.symlinkSync(path.join(blobs, 'index'), path.join(snapshot, 'model.safetensors.index.json'));
  write(snapshot, 'config.json', '{}');
  const first = weightsFingerprint(snapshot);
  assert.equal(weightsFingerprint(snapshot), first, 'stable');
  // One byte in the middle of a 10 MB shard, same size, through the symlink.
  const fd = fs.openSync(path.join(blobs, 'a'), 'r+');
  fs.writeSync(fd, 'y', 5_000_000);
  fs.closeSync(fd);
  const changed = weightsFingerprint(snapshot);
  assert.notEqual(changed, first);
  write(blobs, 'b', 'second shard, retrained');
  const retrained = weightsFingerprint(snapshot);
  assert.notEqual(retrained, changed, 'every shard counts');
  // Files the loader does not read (safetensors come first, as in transformers) do not count.
  write(snapshot, 'pytorch_model.bin', 'a pickle');
  write(snapshot, 'README.md', 'not weights');
  assert.equal(weightsFingerprint(snapshot), retrained);
});

describe('stage cache and resume integrity', () => {
  test('cache deleted before a resume: the mask is recomputed from the pretrained weights, not the checkpoint', async () => {
    const { dir, recipe } = await smallProject();
    const whole = await cli(['run', recipe, '--json', '--quiet']);
    assert.equal(whole.code, 0, whole.err);
    const ref = JSON.parse(whole.out)[0].dir;
    const reference = outcome(ref);
    // A second run stopped after its step-1 checkpoint, resumed with the cache gone.
    const again = await cli([
      'run',
      recipe,
      '--json',
      '--quiet',
      '--set',
      `runtime.output_dir=${path.join(dir, 'second')}`,
    ]);
    const run = JSON.parse(again.out)[0].dir;
    for (const f of ['results.json', 'model', 'mask-stats.json', 'child-mask.bin'])
      fs.rmSync(path.join(run, f), { recursive: true });
    fs.rmSync(path.join(dir, '.childtune', 'cache'), { recursive: true });
    const resumed = await cli(['run', '--resume', run]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /resume: continuing from step 1/);
    assert.doesNotMatch(resumed.err, /fisher: cached/);
    assert.deepEqual(outcome(run), reference);
    // And the entry it stored is the one a fresh run computes: later runs reuse the right mask.
    const third = await cli(['run', recipe, '--json', '--set', `runtime.output_dir=${path.join(dir, 'third')}`]);
    assert.match(third.err, /fisher: cached/);
    assert.deepEqual(outcome(JSON.parse(third.out)[0].dir), reference);
  });

  test('a corrupt cache entry is moved aside and recomputed, never used; an entry is never overwritten with other content', async () => {
    const { dir, recipe } = await smallProject();
    const first = await cli(['run', recipe, '--json', '--quiet']);
    const reference = outcome(JSON.parse(first.out)[0].dir);
    const fisherDir = path.join(dir, '.childtune', 'cache', 'fisher');
    const [hash] = fs.readdirSync(fisherDir);
    const mask = path.join(fisherDir, hash, 'mask.bin');
    const bytes = fs.readFileSync(mask);
    bytes[0] ^= 0xff;
    fs.writeFileSync(mask, bytes);
    const second = await cli(['run', recipe, '--json', '--set', `runtime.output_dir=${path.join(dir, 'second')}`]);
    assert.equal(second.code, 0, second.err);
    assert.match(
      second.err,
      /fisher: cache entry \w+ is corrupt \(mask\.bin does not match the hash recorded when it was written\); moved to .*corrupt-\d+ and recomputing/,
    );
    assert.deepEqual(outcome(JSON.parse(second.out)[0].dir), reference);

    const cache = new StageCache(path.join(dir, '.childtune', 'cache'));
    const stored = fs.readFileSync(mask);
    assert.throws(
      () =>
        cache.write('fisher', hash, {
          'mask.bin': new Uint8Array(stored.length),
          'stats.json': fs.readFileSync(path.join(fisherDir, hash, 'stats.json')),
        }),
      /already holds a different mask\.bin for the same inputs; it is kept, not overwritten/,
    );
    assert.deepEqual(fs.readFileSync(mask), stored);
    cache.write('fisher', hash, {
      'mask.bin': stored,
      'stats.json': fs.readFileSync(path.join(fisherDir, hash, 'stats.json')),
    });
  });

  test('resume refuses changed training data or weights by name; --force continues and records it', async () => {
    const { dir, recipe } = await smallProject();
    const r = await cli(['run', recipe, '--json', '--quiet']);
    const run = JSON.parse(r.out)[0].dir;
    const reopen = () => fs.rmSync(path.join(run, 'results.json'));
    reopen();
    const train = path.join(dir, 'data', 'train.tsv');
    fs.writeFileSync(train, fs.readFileSync(train, 'utf8').replace(/\tnot_entailment\n/, '\tentailment\n'));
    const refused = await cli(['run', '--resume', run]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /cannot resume .*: data glue\/rte train changed since the run started/);
    assert.match(refused.err, /--force/);
    assertClean(refused.err);
    assert.ok(fs.existsSync(path.join(run, 'checkpoint.json')), 'nothing lost');
    const forced = await cli(['run', '--resume', run, '--force']);
    assert.equal(forced.code, 0, forced.err);
    assert.match(forced.err, /resume: --force: continuing although data glue\/rte train changed/);
    assert.equal(JSON.parse(fs.readFileSync(path.join(run, 'inputs.json'), 'utf8')).forced.length, 1);

    reopen();
    scaleTensor(path.join(dir, 'model', 'model.safetensors'), 'bert.encoder.layer.0.output.dense.weight', 2);
    const weights = await cli(['run', '--resume', run]);
    assert.equal(weights.code, 1);
    assert.match(weights.err, /the weights of model model changed since the run started/);
  });

  test('a checkpoint file changed since it was written (one flipped bit) is refused by name; resume falls back to the one before it and ends bit-identical', async () => {
    const { recipe } = await smallProject();
    const r = await cli(['run', recipe, '--set', 'training.epochs=2', '--json', '--quiet']);
    assert.equal(r.code, 0, r.err);
    const run = JSON.parse(r.out)[0].dir;
    const reference = outcome(run);
    const pointer = JSON.parse(fs.readFileSync(path.join(run, 'checkpoint.json'), 'utf8'));
    assert.deepEqual([pointer.step, pointer.previous.step], [3, 2], 'the checkpoint before the latest is kept');
    assert.match(pointer.sha256['state.safetensors'], /^[0-9a-f]{64}$/);
    const flip = (dir: string) => {
      const file = path.join(run, dir, 'state.safetensors');
      const bytes = fs.readFileSync(file);
      bytes[bytes.length - 2] ^= 0x10; // a float's exponent bit: the file still parses, a weight changed
      fs.writeFileSync(file, bytes);
      return file;
    };
    const reopen = () => fs.rmSync(path.join(run, 'results.json'));

    reopen();
    const damaged = flip(pointer.dir);
    const resumed = await cli(['run', '--resume', run]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.ok(
      resumed.err.includes(
        `resume: ${damaged} does not match the sha256 recorded when it was written (the file is damaged); falling back to the checkpoint before it, checkpoints/step-000002 (step 2)`,
      ),
      resumed.err,
    );
    assert.match(resumed.err, /resume: continuing from step 2 \(checkpoints\/step-000002\)/);
    assert.deepEqual(outcome(run), reference, 'the same losses, metrics and weights as the uninterrupted run');

    reopen();
    const latest = JSON.parse(fs.readFileSync(path.join(run, 'checkpoint.json'), 'utf8'));
    flip(latest.dir);
    flip(latest.previous.dir);
    const refused = await cli(['run', '--resume', run]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      /cannot resume .*: .*step-000003\/state\.safetensors does not match the sha256 recorded when it was written \(the file is damaged\); .*step-000002\/state\.safetensors does not match the sha256 .*; no earlier intact checkpoint is left/,
    );
    assert.match(refused.err, /hint: Start the run again without --resume, or remove .*checkpoint\.json/);
    assertClean(refused.err);
    assert.equal(JSON.parse(fs.readFileSync(path.join(run, 'error.json'), 'utf8')).stage, 'resume');
  });

  test("a recording of F's masks carries the sha256 of f-masks.bin: a flipped bit, or a recording that never finished, is refused by name", async () => {
    const { dir, recipe } = await smallProject();
    const sets = ['strategy.kind=child-tuning-f', 'strategy.fisher=null'].flatMap((s) => ['--set', s]);
    const recorded = await cli(['run', recipe, ...sets, '--set', 'strategy.f_masks={record: true}', '--json']);
    assert.equal(recorded.code, 0, recorded.err);
    const run = JSON.parse(recorded.out)[0].dir;
    const meta = JSON.parse(fs.readFileSync(path.join(run, 'f-masks.json'), 'utf8'));
    const bin = fs.readFileSync(path.join(run, 'f-masks.bin'));
    assert.equal(meta.steps, 2);
    assert.equal(meta.sha256, createHash('sha256').update(bin).digest('hex'));
    const replay = (from: string) => cli(['run', recipe, ...sets, '--set', `strategy.f_masks={replay: ${from}}`]);
    assert.equal((await replay(run)).code, 0, 'an intact recording replays');

    const copy = (name: string, masks: Buffer, json: object) => {
      const to = path.join(dir, name);
      write(to, 'f-masks.json', JSON.stringify(json));
      fs.writeFileSync(path.join(to, 'f-masks.bin'), masks);
      return to;
    };
    const flipped = Buffer.from(bin);
    flipped[meta.step_bytes + 5] ^= 0x04;
    const damaged = copy('flipped', flipped, meta);
    const refused = await replay(damaged);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      /flipped\/f-masks\.bin does not match the size and sha256 .*flipped\/f-masks\.json recorded \(the file is damaged or was cut short\)/,
    );
    assert.match(
      refused.err,
      /hint: Copy f-masks\.bin again from the recording run's directory, or record the masks again/,
    );
    assertClean(refused.err);

    const { steps: _steps, sha256: _sha256, ...unfinished } = meta;
    const partial = await replay(copy('unfinished', bin, unfinished));
    assert.equal(partial.code, 1);
    assert.match(
      partial.err,
      /unfinished\/f-masks\.json records no step count and sha256 of f-masks\.bin: the recording run did not finish/,
    );
    assertClean(partial.err);
  });

  test("warmup steps round up as in Hugging Face's Trainer; child-mask.bin is in checkpoint order with a versioned index", async () => {
    const { recipe } = await smallProject('');
    const r = await cli([
      'run',
      recipe,
      '--json',
      '--quiet',
      '--set',
      'training.schedule.warmup_ratio=0.3',
      '--set',
      'training.optimizer.lr=0.001',
    ]);
    assert.equal(r.code, 0, r.err);
    const run = JSON.parse(r.out)[0].dir;
    // 2 steps x 0.3 = 0.6 -> 1 warmup step: lr 0 at the first step, the peak at the second.
    const lrs = metricsLog(run)
      .filter((e) => e.kind === 'step')
      .map((e) => e.lr);
    assert.deepEqual(lrs, [0, 0.001]);

    const mask = readChildMask(run)!;
    assert.equal(mask.index.layout, 'checkpoint-row-major');
    assert.equal(mask.index.version, 2);
    const cacheDir = path.join(path.dirname(path.dirname(run)), '.childtune', 'cache', 'fisher');
    const engine = new Uint8Array(fs.readFileSync(path.join(cacheDir, fs.readdirSync(cacheDir)[0], 'mask.bin')));
    // The cache keeps the engine's [in, out] layout; the published file is [out, in] for dense weights.
    let engineAt = 0;
    for (const t of mask.index.tensors) {
      const at = (bits: Uint8Array, base: number, j: number) => getBit(bits.subarray(base), j);
      const [rows, cols] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
      for (let k = 0; k < 200; k++) {
        const r0 = (k * 7) % rows,
          c0 = (k * 13) % cols;
        const engineIndex = t.shape.length === 2 ? c0 * rows + r0 : c0;
        assert.equal(
          at(mask.bits, t.offset, r0 * cols + c0),
          at(engine, engineAt, engineIndex),
          `${t.name}[${r0}, ${c0}]`,
        );
      }
      engineAt += t.bytes;
    }
  });
});

describe('locks that recover', () => {
  const lockFile = (dir: string, owner: unknown) => write(dir, 'run.lock', JSON.stringify(owner));

  test('dead owner on this host (or a reused pid, or before a reboot) is taken over with a log line', () => {
    const host = os.hostname();
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const owners = [
      { pid: dead, host, boot_id: null, start_time: null },
      // Our own pid with another start time: a container's retry that is PID 1 again.
      { pid: process.pid, host, boot_id: null, start_time: '1' },
      { pid: process.pid, host, boot_id: 'another-boot', start_time: startTimeOf(process.pid) },
      dead,
    ];
    for (const owner of owners) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-lock-'));
      lockFile(dir, owner);
      write(dir, 'results.json.tmp-999999', 'half');
      const logs: string[] = [];
      const run = RunDir.at(dir, (l) => logs.push(l));
      assert.match(logs.join('\n'), /lock: took over .*run\.lock from process \d+ on .*, which is no longer running/);
      assert.match(logs.join('\n'), /removed 1 temporary file/);
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'run.lock'), 'utf8')).pid, process.pid);
      run.unlock();
      assert.ok(!fs.existsSync(path.join(dir, 'run.lock')));
    }
  });

  test("a live owner is refused with its pid; another host's recent lock is refused naming the host", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-lock-'));
    const held = DirLock.acquire(dir);
    assert.throws(() => RunDir.at(dir), new RegExp(`is in use by process ${process.pid} on this host`));
    held.release();
    lockFile(dir, { pid: 4242, host: 'node-17.cluster', boot_id: 'x', start_time: '1' });
    assert.throws(
      () => RunDir.at(dir),
      /locked by process 4242 on host node-17\.cluster, active in the last 10 minutes/,
    );
    // Silent for longer than that: abandoned.
    const old = new Date(Date.now() - 11 * 60_000);
    fs.utimesSync(path.join(dir, 'run.lock'), old, old);
    RunDir.at(dir, () => {}).unlock();
  });
});
