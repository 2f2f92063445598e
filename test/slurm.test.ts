import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cli, GLUE, REPO, write } from './helpers.js';
import { BIN, smallProject } from './integrity-helpers.js';

const CLUSTER = path.join(REPO, 'test', 'slurm', 'cluster.sh');
const TOOLS = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol'];

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

const numbers = (dir: string) =>
  ['trial-000', 'trial-001'].map((t) => {
    const r = JSON.parse(fs.readFileSync(path.join(dir, t, 'results.json'), 'utf8'));
    return { metrics: r.metrics, epochs: r.epochs, final_loss: r.final_loss, steps: r.steps, seed: r.seed };
  });

test("an emitted sweep runs on a real single-node Slurm; a requeued array task resumes by itself; its report equals a local run's", async (t) => {
  const missing = TOOLS.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  if (missing.length)
    return t.skip(`Slurm is not installed here (missing ${missing.join(', ')}); CI installs slurm-wlm and munge`);
  if (process.getuid?.() !== 0)
    return t.skip('the single-node Slurm runs its daemons as root; run the tests as root (CI does)');

  // Long enough (32 steps, a checkpoint every 2) that the requeue lands midway.
  const { dir, recipe } = await smallProject('sweep: {seeds: [1, 2]}\n');
  const rows = fs.readFileSync(path.join(GLUE, 'RTE', 'train.tsv'), 'utf8').split('\n');
  write(dir, 'data/train.tsv', rows.slice(0, 65).join('\n') + '\n');
  fs.writeFileSync(
    recipe,
    fs
      .readFileSync(recipe, 'utf8')
      .replace(
        'training: {epochs: 1, batch_size: 8, log_every: 1, checkpoint_every: 1}',
        'training: {epochs: 4, batch_size: 8, log_every: 1, checkpoint_every: 2}',
      ),
  );

  const local = await cli([
    'sweep',
    recipe,
    '--json',
    '--quiet',
    '--set',
    `runtime.output_dir=${path.join(dir, 'local')}`,
    '--set',
    `runtime.cache_dir=${path.join(dir, 'local-cache')}`,
  ]);
  assert.equal(local.code, 0, local.err);
  const localSweep = path.dirname(JSON.parse(local.out)[0].dir);

  const cluster = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-slurm-'));
  let passed = false;
  const started = spawnSync('bash', [CLUSTER, 'start', cluster, String(await freePort()), String(await freePort())], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  try {
    assert.equal(started.status, 0, `starting Slurm failed:\n${started.stdout}\n${started.stderr}`);
    const bin = path.join(cluster, 'bin');
    write(bin, 'childtune', `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`);
    fs.chmodSync(path.join(bin, 'childtune'), 0o755);
    const env = { ...process.env, SLURM_CONF: path.join(cluster, 'slurm.conf'), PATH: `${bin}:${process.env.PATH}` };
    const slurm = (...args: string[]) => spawnSync(args[0], args.slice(1), { env, encoding: 'utf8' });

    const emitted = await cli([
      'sweep',
      recipe,
      '--emit',
      'slurm',
      '--set',
      `runtime.output_dir=${path.join(dir, 'cluster')}`,
    ]);
    assert.equal(emitted.code, 0, emitted.err);
    const sweepDir = path.dirname(emitted.out.trim());
    const submitted = spawnSync('bash', [emitted.out.trim()], { env, cwd: sweepDir, encoding: 'utf8' });
    assert.equal(submitted.status, 0, submitted.stderr);
    const arrayJob = submitted.stdout.trim().match(/(\d+)\s*$/)?.[1];
    assert.ok(arrayJob, `sbatch printed no job id: ${submitted.stdout}`);

    // Requeue task 1 once it has checkpointed a few steps; Slurm signals it (SIGTERM) and runs it again.
    const pointer = path.join(sweepDir, 'trial-001', 'checkpoint.json');
    await until(
      'trial 1 to checkpoint step 4',
      () => fs.existsSync(pointer) && JSON.parse(fs.readFileSync(pointer, 'utf8')).step >= 4,
      180_000,
    );
    const requeued = slurm('scontrol', 'requeue', `${arrayJob}_1`);
    assert.equal(requeued.status, 0, requeued.stderr);
    // Slurm starts the requeued task again by itself, once its old credential expired (cred_expire=10).
    await until('every job to finish', () => slurm('squeue', '-h').stdout.trim() === '', 240_000, 500);

    const retried = JSON.parse(fs.readFileSync(path.join(sweepDir, 'trial-001', 'results.json'), 'utf8'));
    assert.ok(
      retried.resumed_from_step >= 4,
      `the retry resumed from its checkpoint (resumed_from_step ${retried.resumed_from_step})`,
    );
    assert.ok(!fs.existsSync(path.join(sweepDir, 'trial-001', 'run.lock')));
    assert.ok(
      fs.readdirSync(path.join(sweepDir, 'prepare')).length === 1,
      'the prepare job computed the shared fisher stage',
    );

    assert.equal((await cli(['report', sweepDir])).code, 0);
    assert.equal((await cli(['report', localSweep])).code, 0);
    const table = (d: string) => JSON.parse(fs.readFileSync(path.join(d, 'report.json'), 'utf8')).table;
    assert.deepEqual(table(sweepDir), table(localSweep));
    assert.deepEqual(numbers(sweepDir), numbers(localSweep));
    passed = true;
  } finally {
    const stopped = spawnSync('bash', [CLUSTER, 'stop', cluster], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(stopped.status, 0, stopped.stderr);
    // The daemons' logs stay for a failed run to be read.
    if (passed) fs.rmSync(cluster, { recursive: true, force: true });
  }
});
