import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { cli, GLUE } from './helpers.js';
import { BIN, outcome, smallProject, spawnCli, temporaries } from './integrity-helpers.js';

/**
 * Fault injection: the run is stopped at its N-th file rename (CHILDTUNE_FAULT_AT=N[:SIGNAL] makes writeAtomic
 * signal its own process just before that rename), then retried exactly as a cluster array retry would, with
 * the same command and no manual step. Every retry must end bit-identical to an uninterrupted run.
 */
describe('fault injection', () => {
  let project: { dir: string; recipe: string };
  let reference: ReturnType<typeof outcome>;
  let cases = 0;

  /** A fresh one-trial sweep lock with its own cache, so each case writes the fisher stage too. */
  const freshLock = async () => {
    const n = cases++;
    const emitted = await cli([
      'sweep',
      project.recipe,
      '--emit',
      'slurm',
      '--set',
      `runtime.output_dir=${path.join(project.dir, `case-${n}`)}`,
      '--set',
      `runtime.cache_dir=${path.join(project.dir, `cache-${n}`)}`,
    ]);
    assert.equal(emitted.code, 0, emitted.err);
    return path.join(path.dirname(emitted.out.trim()), 'sweep.lock.json');
  };
  const trialDir = (lock: string) => path.join(path.dirname(lock), 'trial-000');

  /** Stops `run --trial 0 LOCK` at rename n with signal; retries when it did not finish. Returns how it ended. */
  const faultThenRetry = async (n: number, signal: 'SIGKILL' | 'SIGINT' | 'SIGTERM') => {
    const lock = await freshLock();
    const first = spawnCli(['run', '--trial', '0', lock, '--quiet'], { CHILDTUNE_FAULT_AT: `${n}:${signal}` });
    const dir = trialDir(lock);
    if (first.status !== 0) {
      if (signal === 'SIGKILL') assert.equal(first.signal, 'SIGKILL', first.stderr);
      else {
        assert.equal(first.status, signal === 'SIGINT' ? 130 : 143, first.stderr);
        const error = JSON.parse(fs.readFileSync(path.join(dir, 'error.json'), 'utf8'));
        assert.equal(error.state, 'interrupted');
        assert.equal(error.signal, signal);
        assert.ok(!fs.existsSync(path.join(dir, 'run.lock')), 'an interrupted run releases its lock');
      }
      const retry = await cli(['run', '--trial', '0', lock, '--quiet']);
      assert.equal(retry.code, 0, `retry after ${signal} at rename ${n}: ${retry.err}`);
    }
    assert.deepEqual(outcome(dir), reference, `${signal} at rename ${n}`);
    assert.deepEqual(temporaries(path.dirname(lock)), [], 'no temporary files left');
    assert.ok(!fs.existsSync(path.join(dir, 'error.json')), 'a finished run keeps no error.json');
    return first.status === 0 ? 'finished' : 'stopped';
  };

  before(async () => {
    project = await smallProject('sweep: {seeds: [7]}\n');
    const lock = await freshLock();
    const whole = await cli(['run', '--trial', '0', lock, '--quiet']);
    assert.equal(whole.code, 0, whole.err);
    reference = outcome(trialDir(lock));
  });

  /** How many renames an uninterrupted run makes (counted by the SIGKILL test, which runs first). */
  let renames = 0;

  test('SIGKILL at every file rename of a run, then the same command again, ends bit-identical', async () => {
    let n = 1;
    for (; n < 60; n++) if ((await faultThenRetry(n, 'SIGKILL')) === 'finished') break;
    assert.ok(n > 12 && n < 60, `the run has ${n - 1} renames`);
    renames = n - 1;
  });

  // One handler serves both signals, so they take turns over the renames (each rename gets one, each signal half):
  // the whole cover at half the time of a pass per signal.
  test('SIGINT and SIGTERM, in turn, at every file rename of a run stop at the next safe point (exit 130 or 143, error.json interrupted, lock released); the retry ends bit-identical', async () => {
    assert.ok(renames > 12, 'the SIGKILL test counts the renames first');
    const ends = { SIGINT: [] as string[], SIGTERM: [] as string[] };
    for (let n = 1; n <= renames; n++) {
      const signal = n % 2 ? 'SIGINT' : 'SIGTERM';
      ends[signal].push(await faultThenRetry(n, signal));
    }
    for (const [signal, outcomes] of Object.entries(ends))
      assert.ok(outcomes.includes('stopped'), `at least one point stopped the run with ${signal}`);
  });

  test('a second Ctrl-C exits at once, leaving the lock; the retry takes it over without a manual step', async () => {
    // A long evaluation (no safe point inside) gives the second signal time to arrive before the run ends.
    const slow = await smallProject('sweep: {seeds: [7]}\n');
    fs.copyFileSync(path.join(GLUE, 'RTE', 'train.tsv'), path.join(slow.dir, 'data', 'dev.tsv'));
    const emitted = await cli(['sweep', slow.recipe, '--emit', 'slurm']);
    const lock = path.join(path.dirname(emitted.out.trim()), 'sweep.lock.json');
    const child = spawn(process.execPath, [BIN, 'run', '--trial', '0', lock], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let sent = 0;
    child.stderr.on('data', (d) => {
      stderr += d;
      // The second signal only once the first was seen: signals sent back to back may arrive as one.
      if (sent === 0 && /train 2\/2/.test(stderr)) (sent++, child.kill('SIGINT'));
      if (sent === 1 && /SIGINT: stopping at the next safe point/.test(stderr)) (sent++, child.kill('SIGINT'));
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 130, stderr);
    const dir = trialDir(lock);
    assert.ok(!fs.existsSync(path.join(dir, 'results.json')), 'stopped before the end');
    assert.ok(fs.existsSync(path.join(dir, 'run.lock')), 'an immediate exit leaves its lock');
    const retry = await cli(['run', '--trial', '0', lock]);
    assert.equal(retry.code, 0, retry.err);
    assert.match(retry.err, /lock: took over/);
    assert.match(retry.err, /resume: continuing from step 1/);
  });
});
