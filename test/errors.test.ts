import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { printError, UserError } from '../src/cli/errors.js';
import { DataFileError } from '../src/data/formats.js';
import { BackendError } from '../src/engine/backend.js';
import { ModelError } from '../src/engine/config.js';
import { ChildtuneError, ERROR_CODES, type ErrorCode } from '../src/engine/errors.js';
import { WriteError } from '../src/engine/files.js';
import { HubError } from '../src/engine/hub/cache.js';
import { SafetensorsError } from '../src/engine/safetensors.js';
import { TokenizerError } from '../src/engine/tokenizer.js';
import { StageCache } from '../src/run/cache.js';
import { readCheckpoint } from '../src/run/checkpoint.js';
import { RunError } from '../src/run/errors.js';
import { Interrupted } from '../src/run/interrupt.js';
import { cli, microModel, tmpProject, writeMicroCheckpoint } from './helpers.js';
import { fakeRun } from './report-fixtures.js';

const printed = (e: unknown, debug = false) => {
  const lines: string[] = [];
  const code = printError(e, debug, { err: (t) => lines.push(t) });
  return { code, text: lines.join('\n') };
};

describe('one error base', () => {
  test('every code prints its message and hint with its exit status; the stack only with --debug', () => {
    const expected: Record<ErrorCode, number> = {
      usage: 2,
      input: 1,
      data: 1,
      model: 1,
      tokenizer: 1,
      safetensors: 1,
      hub: 1,
      backend: 1,
      write: 1,
      run: 1,
      interrupted: 130,
    };
    assert.deepEqual(Object.keys(ERROR_CODES).sort(), Object.keys(expected).sort());
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const e = new ChildtuneError(code, `something ${code}`, { hint: `fix the ${code}` });
      const plain = printed(e);
      assert.equal(plain.code, expected[code], code);
      assert.equal(plain.text, `error: something ${code}\n  hint: fix the ${code}`);
      const debug = printed(e, true);
      assert.match(debug.text, /\n\s+at .+:\d+:\d+\)?/, 'the stack with --debug');
    }
    assert.equal(printed(new ChildtuneError('run', 'no hint')).text, 'error: no hint', 'no hint line without a hint');
  });

  test("each error class derives from the base with its code; a signal keeps the shell's exit status", () => {
    const errno = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    const cases: [ChildtuneError, ErrorCode, number][] = [
      [new UserError('bad flag', 'see --help', 2), 'usage', 2],
      [new UserError('exists'), 'input', 1],
      [new DataFileError('f.tsv', 3, 'bad row'), 'data', 1],
      [new ModelError('m', 'bad config'), 'model', 1],
      [new TokenizerError('t', 'bad vocab'), 'tokenizer', 1],
      [new SafetensorsError('s', 'truncated'), 'safetensors', 1],
      [new HubError('not cached'), 'hub', 1],
      [new BackendError('missing'), 'backend', 1],
      [new WriteError('results.json', errno), 'write', 1],
      [new RunError('cannot resume', 'start again', 'resume'), 'run', 1],
      [new Interrupted('SIGINT'), 'interrupted', 130],
      [new Interrupted('SIGTERM', 'train'), 'interrupted', 143],
    ];
    for (const [e, code, exit] of cases) {
      assert.ok(e instanceof ChildtuneError, e.constructor.name);
      assert.equal(e.code, code, e.constructor.name);
      assert.equal(e.exitCode, exit, e.constructor.name);
      assert.equal(printed(e).code, exit);
      assert.doesNotMatch(printed(e).text, /looks like a bug|\n\s+at /);
    }
    assert.equal(new RunError('x', undefined, 'resume').stage, 'resume');
    assert.equal(new Interrupted('SIGTERM', 'train').stage, 'train');
    assert.match(new WriteError('results.json', errno).hint, /Free disk space/);
  });

  test('an error from elsewhere: a system error is one line; anything else is flagged as a bug, without a stack', () => {
    const errno = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    assert.deepEqual(printed(errno), { code: 1, text: 'error: EMFILE: too many open files' });
    const bug = printed(new TypeError('x is undefined'));
    assert.equal(bug.code, 1);
    assert.match(bug.text, /looks like a bug in childtune; rerun with --debug/);
    assert.doesNotMatch(bug.text, /\n\s+at /);
  });

  test('through the CLI: a usage error exits 2 with its hint, a run error 1', async () => {
    const usage = await cli(['sweep']);
    assert.equal(usage.code, 2);
    assert.match(
      usage.err,
      /error: sweep needs a recipe file, --resume SWEEP_DIR or --prepare LOCKFILE\n {2}hint: Example: childtune sweep/,
    );
    const missing = await cli(['report', path.join(tmpProject(), 'nothing-here')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /is not a directory\n {2}hint: Pass run or sweep directories\./);
    assert.doesNotMatch(usage.err + missing.err, /looks like a bug|\n\s+at /);
  });
});

describe('run artifacts carry a version and are read back through their types', () => {
  test('a results.json or mask-stats.json from a newer childtune is refused, naming the file and field; one without a version reads as version 1', async () => {
    const dir = tmpProject();
    const run = path.join(dir, 'run');
    fakeRun(run, { task: 'glue/rte', strategy: 'child-tuning-d', seed: 1, score: 0.6 });
    const results = path.join(run, 'results.json');
    const original = JSON.parse(fs.readFileSync(results, 'utf8'));
    assert.equal(original.version, undefined, 'the fixture predates versions');
    assert.equal((await cli(['report', dir])).code, 0, 'an unversioned results.json reads as version 1');

    fs.writeFileSync(results, JSON.stringify({ ...original, version: 2 }));
    let r = await cli(['report', dir]);
    assert.equal(r.code, 1);
    assert.ok(r.err.includes(`${results}: "version" is 2, newer than this childtune reads (1)`), r.err);
    assert.match(r.err, /hint: Read it with the childtune version that wrote it, or upgrade childtune\./);
    assert.doesNotMatch(r.err, /looks like a bug|\n\s+at /);

    fs.writeFileSync(results, JSON.stringify({ ...original, version: 'one' }));
    r = await cli(['report', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /results\.json: "version" must be a whole number of at least 1, found string "one"/);

    fs.writeFileSync(results, JSON.stringify({ ...original, version: 1 }));
    const stats = path.join(run, 'mask-stats.json');
    fs.writeFileSync(stats, JSON.stringify({ ...JSON.parse(fs.readFileSync(stats, 'utf8')), version: 3 }));
    r = await cli(['report', dir]);
    assert.equal(r.code, 1);
    assert.ok(r.err.includes(`${stats}: "version" is 3, newer than this childtune reads (1)`), r.err);
  });

  test('a checkpoint or a stage cache entry from a newer childtune is refused, naming the file, and kept', () => {
    const dir = tmpProject();
    const model = microModel();
    const rel = writeMicroCheckpoint(dir, model, { step: 4 });
    const loopFile = path.join(dir, rel, 'loop.json');
    fs.writeFileSync(loopFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(loopFile, 'utf8')), version: 2 }));
    assert.throws(
      () => readCheckpoint(dir, model.specs, () => {}),
      (e: unknown) =>
        e instanceof RunError && e.message === `${loopFile}: "version" is 2, newer than this childtune reads (1)`,
    );

    const cache = new StageCache(path.join(dir, 'cache'));
    cache.write('fisher', 'abc', { 'mask.bin': new Uint8Array([1, 2]) });
    const done = path.join(cache.dir('fisher', 'abc'), 'done.json');
    assert.equal(JSON.parse(fs.readFileSync(done, 'utf8')).version, 1);
    assert.equal(cache.read('fisher', 'abc').state, 'hit');
    fs.writeFileSync(done, JSON.stringify({ ...JSON.parse(fs.readFileSync(done, 'utf8')), version: 2 }));
    assert.throws(
      () => cache.read('fisher', 'abc'),
      (e: unknown) =>
        e instanceof RunError && e.message === `${done}: "version" is 2, newer than this childtune reads (1)`,
    );
    assert.ok(fs.existsSync(done), 'a newer entry is not moved aside');
  });

  test('a damaged checkpoint.json is refused naming the file and how to restore it, never read as a path', () => {
    const dir = tmpProject();
    const model = microModel();
    const pointer = path.join(dir, 'checkpoint.json');
    for (const text of ['{"dir": "checkp', '[]', '{"dir": "../../etc", "step": 1}', '{"step": 4}']) {
      fs.writeFileSync(pointer, text);
      assert.throws(
        () => readCheckpoint(dir, model.specs, () => {}),
        (e: unknown) => {
          assert.ok(e instanceof RunError, String(e));
          assert.ok(e.message.startsWith(`${pointer} is damaged: `), e.message);
          assert.match(e.hint!, /Restore it as \{"dir": "checkpoints\/step-NNNNNN", "step": N\}/);
          assert.doesNotMatch(printed(e).text, /looks like a bug|\n\s+at /);
          return true;
        },
        text,
      );
    }
  });
});
