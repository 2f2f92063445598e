import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { hubCacheDir, localModelDir, parseHubId } from '../src/engine/hub/cache.js';
import { startFakeHub, type FakeHub } from './hub-server.js';
import { cli, FIXTURES, GLUE, REPO, tmpProject, write } from './helpers.js';

const TINY = path.join(FIXTURES, 'bert-tiny-random');
const HF_VARS = [
  'HF_HOME',
  'HF_HUB_CACHE',
  'HUGGINGFACE_HUB_CACHE',
  'HF_ENDPOINT',
  'HF_TOKEN',
  'HUGGING_FACE_HUB_TOKEN',
  'HF_HUB_OFFLINE',
  'HF_HUB_ETAG_TIMEOUT',
  'HF_HUB_DOWNLOAD_TIMEOUT',
];

/** GLUE RTE as nyu-mll/glue publishes it (a few hundred rows): sentence1, sentence2, label (ClassLabel index), idx. */
function rteParquet(split: 'train' | 'dev', rows: number): Buffer {
  const lines = fs
    .readFileSync(path.join(GLUE, 'RTE', `${split}.tsv`), 'utf8')
    .trim()
    .split('\n')
    .slice(1, rows + 1)
    .map((l) => l.split('\t'));
  return Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: 'sentence1', data: lines.map((c) => c[1]), type: 'STRING' },
        { name: 'sentence2', data: lines.map((c) => c[2]), type: 'STRING' },
        {
          name: 'label',
          data: lines.map((c) => BigInt(['entailment', 'not_entailment'].indexOf(c[3]))),
          type: 'INT64',
        },
        { name: 'idx', data: lines.map((_, i) => i), type: 'INT32' },
      ],
    }),
  );
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const modelFiles = () => ({
  'config.json': fs.readFileSync(path.join(TINY, 'config.json')),
  'vocab.txt': fs.readFileSync(path.join(TINY, 'vocab.txt')),
  'model.safetensors': fs.readFileSync(path.join(TINY, 'model.safetensors')),
  'tf_model.h5': Buffer.from('not fetched'),
  'README.md': Buffer.from('# tiny\n'),
});

describe('hub: fetch into the huggingface_hub cache layout', () => {
  let hub: FakeHub;
  const saved: Record<string, string | undefined> = {};
  before(async () => {
    for (const v of HF_VARS) saved[v] = process.env[v];
    hub = await startFakeHub([
      { type: 'model', id: 'org/tiny', files: modelFiles() },
      { type: 'model', id: 'org/gated', files: modelFiles(), token: 'hf_secret' },
      {
        type: 'dataset',
        id: 'nyu-mll/glue',
        files: {
          'rte/train-00000-of-00001.parquet': rteParquet('train', 300),
          'rte/validation-00000-of-00001.parquet': rteParquet('dev', 100),
          'cola/train-00000-of-00001.parquet': Buffer.from('x'),
          'README.md': Buffer.from('glue'),
        },
      },
    ]);
  });
  beforeEach(() => {
    for (const v of HF_VARS) delete process.env[v];
    process.env.HF_HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-hf-'));
    process.env.HF_ENDPOINT = hub.url;
    hub.reset();
    hub.requests.length = 0;
    hub.auth.length = 0;
    hub.cdnAuth.length = 0;
  });
  after(async () => {
    for (const v of HF_VARS)
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    await hub.close();
  });

  test('a model lands as refs/main, snapshots/<commit>/ links into blobs/<etag>; only config, tokenizer and weights', async () => {
    const r = await cli(['fetch', 'org/tiny']);
    assert.equal(r.code, 0, r.err);
    const folder = path.join(process.env.HF_HOME!, 'hub', 'models--org--tiny');
    const commit = hub.commitOf('org/tiny');
    assert.equal(fs.readFileSync(path.join(folder, 'refs', 'main'), 'utf8'), commit);
    const snapshot = path.join(folder, 'snapshots', commit);
    assert.equal(r.out.trim(), snapshot);
    assert.deepEqual(fs.readdirSync(snapshot).sort(), ['config.json', 'model.safetensors', 'vocab.txt']);
    for (const f of ['config.json', 'model.safetensors']) {
      const link = fs.readlinkSync(path.join(snapshot, f));
      assert.match(
        link,
        /^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/,
        'a relative link into blobs/, as huggingface_hub makes',
      );
      assert.deepEqual(fs.readFileSync(path.join(snapshot, f)), fs.readFileSync(path.join(TINY, f)));
    }
    assert.equal(
      fs.readlinkSync(path.join(snapshot, 'model.safetensors')).slice(-64),
      (await import('node:crypto'))
        .createHash('sha256')
        .update(fs.readFileSync(path.join(TINY, 'model.safetensors')))
        .digest('hex'),
    );
    assert.match(r.err, /downloaded model\.safetensors: .* at .*\/s/, 'a progress line with bytes and rate');
    assert.equal(localModelDir('org/tiny'), snapshot);
    assert.equal(localModelDir(folder), snapshot, 'the cache folder itself names its main snapshot');
    const enc = await cli(['encode', '--model', 'org/tiny', '--text', 'hello world', '--json']);
    assert.equal(enc.code, 0, enc.err);
    const direct = await cli(['encode', '--model', TINY, '--text', 'hello world', '--json']);
    assert.deepEqual(
      JSON.parse(enc.out),
      JSON.parse(direct.out),
      'the cached snapshot encodes exactly as the fixture directory',
    );

    hub.requests.length = 0;
    const again = await cli(['fetch', 'org/tiny']);
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(
      hub.requests,
      ['GET /api/models/org/tiny/revision/main'],
      'a second fetch only asks for the listing',
    );
    hub.requests.length = 0;
    const pinned = await cli(['fetch', 'org/tiny', '--revision', commit]);
    assert.equal(pinned.code, 0, pinned.err);
    assert.deepEqual(hub.requests, [], 'a cached commit needs no request');
    assert.equal(localModelDir(`org/tiny@${commit}`), snapshot);
  });

  test('a download cut midway resumes from the .incomplete file with a Range request', async () => {
    const size = fs.statSync(path.join(TINY, 'model.safetensors')).size;
    hub.cut.set('model.safetensors', size >> 1);
    const first = await cli(['fetch', 'org/tiny']);
    assert.equal(first.code, 1);
    assert.match(first.err, /model\.safetensors: the download broke off after \d+ bytes/);
    assert.match(first.err, /hint: Run the same command again: it resumes/);
    assert.doesNotMatch(first.err, /looks like a bug|at .*\.js:\d+/);
    const blobs = path.join(process.env.HF_HOME!, 'hub', 'models--org--tiny', 'blobs');
    const partial = fs.readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
    assert.ok(partial, 'the partial download is kept');
    const kept = fs.statSync(path.join(blobs, partial)).size;
    assert.ok(kept > 0 && kept < size);
    assert.ok(
      !fs.existsSync(path.join(process.env.HF_HOME!, 'hub', 'models--org--tiny', 'refs', 'main')),
      'no ref until every file is in place',
    );
    const second = await cli(['fetch', 'org/tiny']);
    assert.equal(second.code, 0, second.err);
    assert.ok(
      hub.requests.some((q) => q.endsWith(`bytes=${kept}-`)),
      `a Range request from byte ${kept}: ${hub.requests.join('; ')}`,
    );
    assert.deepEqual(
      fs.readFileSync(path.join(localModelDir('org/tiny'), 'model.safetensors')),
      fs.readFileSync(path.join(TINY, 'model.safetensors')),
    );
    assert.ok(!fs.readdirSync(blobs).some((f) => f.endsWith('.incomplete')));
  });

  test('a corrupt body is caught by its sha256 and removed', async () => {
    hub.corrupt.add('model.safetensors');
    try {
      const r = await cli(['fetch', 'org/tiny']);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /org\/tiny: model\.safetensors: the downloaded file is corrupt \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\); it was removed/,
      );
      const blobs = path.join(process.env.HF_HOME!, 'hub', 'models--org--tiny', 'blobs');
      assert.ok(
        !fs.readdirSync(blobs).some((f) => f.length === 64 || f.endsWith('.incomplete')),
        'nothing corrupt stays in the cache',
      );
    } finally {
      hub.corrupt.clear();
    }
  });

  test('401 without a token, 404 for a missing revision: clear errors; HF_TOKEN is sent as a bearer token', async () => {
    const denied = await cli(['fetch', 'org/gated']);
    assert.equal(denied.code, 1);
    assert.match(denied.err, /org\/gated: the hub answered 401 Unauthorized .*gated or private/);
    assert.match(denied.err, /hint: .*HF_TOKEN/);
    const missing = await cli(['fetch', 'org/tiny@v9']);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /org\/tiny@v9: not found on http:\/\/127\.0\.0\.1:\d+ \(RevisionNotFound\)/);
    assert.match(missing.err, /hint: Check the revision/);
    process.env.HF_TOKEN = 'hf_secret';
    const allowed = await cli(['fetch', 'org/gated']);
    assert.equal(allowed.code, 0, allowed.err);
    assert.ok(hub.auth.includes('Bearer hf_secret'));
    const bad = await cli(['fetch', 'not a model']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /neither a model id .* nor a built-in task/);
  });

  test('HF_HUB_OFFLINE: no request at all; what the cache lacks is a clear error', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    const r = await cli(['fetch', 'org/tiny']);
    assert.equal(r.code, 1);
    assert.match(r.err, /model org\/tiny is not in the hub cache .* HF_HUB_OFFLINE is set/);
    const enc = await cli(['encode', '--model', 'org/tiny', '--text', 'x']);
    assert.equal(enc.code, 1);
    assert.match(enc.err, /model org\/tiny is not in the hub cache/);
    assert.deepEqual(hub.requests, []);
    delete process.env.HF_HUB_OFFLINE;
    assert.equal((await cli(['fetch', 'org/tiny'])).code, 0);
    hub.requests.length = 0;
    process.env.HF_HUB_OFFLINE = '1';
    const cached = await cli(['fetch', 'org/tiny']);
    assert.equal(cached.code, 0, cached.err);
    assert.deepEqual(hub.requests, []);
  });

  /** Every file under HF_HOME that is not inside the hub cache. */
  const outsideCache = () =>
    fs
      .readdirSync(process.env.HF_HOME!, { recursive: true, encoding: 'utf8' })
      .filter((f) => f !== 'hub' && !f.startsWith(`hub${path.sep}`));
  const blobsOf = (repo: string) =>
    path.join(process.env.HF_HOME!, 'hub', `models--${repo.replace('/', '--')}`, 'blobs');

  test('a hostile ETag, commit id or file name never becomes a path: refused, naming file and header, nothing written', async () => {
    hub.etags.set('config.json', '"../../../ESCAPED"');
    const etag = await cli(['fetch', 'org/tiny']);
    assert.equal(etag.code, 1);
    assert.match(
      etag.err,
      /org\/tiny: config\.json: the hub's ETag header \("\\"\.\.\/\.\.\/\.\.\/ESCAPED\\""\) is not a sha256 or git blob id/,
    );
    assert.match(etag.err, /hint: Check HF_ENDPOINT: .*passes the hub's ETag and X-Linked-Etag headers through/);
    assert.ok(!fs.existsSync(path.join(process.env.HF_HOME!, 'ESCAPED')));
    assert.deepEqual(outsideCache(), []);
    assert.ok(!fs.existsSync(blobsOf('org/tiny')) || fs.readdirSync(blobsOf('org/tiny')).length === 0);

    // A mirror's own ETag form can neither name nor verify the blob: refused before any byte is written.
    hub.reset();
    hub.etags.set('model.safetensors', 'W/"5f2b-18c3a"');
    const mirror = await cli(['fetch', 'org/tiny']);
    assert.equal(mirror.code, 1);
    assert.match(mirror.err, /org\/tiny: model\.safetensors: the hub's X-Linked-Etag header \("W\/\\"5f2b-18c3a\\""\)/);
    assert.ok(!fs.readdirSync(blobsOf('org/tiny')).some((f) => f.includes('5f2b')));

    hub.reset();
    hub.listedCommit = '../../../../ESCAPED';
    const commit = await cli(['fetch', 'org/tiny']);
    assert.equal(commit.code, 1);
    assert.match(commit.err, /org\/tiny: the hub's listing has no commit id \(40 hex digits\) or file list/);

    for (const name of ['../../../../ESCAPED.json', '/tmp/ESCAPED', 'a/./b', 'a\\..\\b']) {
      hub.reset();
      hub.extraSiblings.push(name);
      const listed = await cli(['fetch', 'org/tiny']);
      assert.equal(listed.code, 1, name);
      assert.match(
        listed.err,
        new RegExp(
          `org/tiny: the hub's listing names a file outside the repository \\(${escapeRe(JSON.stringify(name))}\\); nothing was downloaded`,
        ),
      );
    }
    assert.deepEqual(outsideCache(), []);
    assert.equal(parseHubId('org/tiny@../../x'), undefined, 'a revision leaving refs/ is not an id');
    assert.equal(parseHubId('org/tiny@refs/pr/1')?.revision, 'refs/pr/1');
  });

  test('HF_TOKEN goes to the HF_ENDPOINT origin only, never to the CDN (another origin) a download redirects to', async () => {
    process.env.HF_TOKEN = 'hf_secret';
    const r = await cli(['fetch', 'org/gated']);
    assert.equal(r.code, 0, r.err);
    assert.ok(hub.auth.length > 0 && hub.auth.every((a) => a === 'Bearer hf_secret'), 'every hub request has it');
    assert.ok(hub.cdnAuth.length > 0, 'the weights came from the CDN');
    assert.deepEqual(
      hub.cdnAuth.filter((a) => a !== undefined),
      [],
      'the CDN never sees a credential',
    );
  });

  test('two fetches of a repository at once (in this process) and a third in another process: each blob downloaded once', async () => {
    // The CDN holds the weights' answer halfway until all three have asked for the file's metadata.
    hub.hold.set('model.safetensors', 3);
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = '60'; // the held answer waits for the other process to start
    const child = new Promise<{ code: number | null; err: string }>((ok) => {
      const p = spawn(process.execPath, [path.join(REPO, 'bin', 'childtune.js'), 'fetch', 'org/tiny'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => ok({ code, err }));
    });
    const results = await Promise.all([cli(['fetch', 'org/tiny']), cli(['fetch', 'org/tiny']), child]);
    for (const r of results) assert.equal(r.code, 0, r.err);
    assert.ok(
      results.some((r) => /model\.safetensors: waiting for process \d+ on .*, which is downloading it/.test(r.err)),
      'a waiter says whom it waits for',
    );
    const count = (pattern: RegExp) => hub.requests.filter((q) => pattern.test(q)).length;
    assert.equal(count(/^GET \/cdn\//), 1, `the weights once: ${hub.requests.join('; ')}`);
    assert.equal(count(/^GET \/org\/tiny\/resolve\/.*\/config\.json$/), 1);
    assert.equal(count(/^GET \/org\/tiny\/resolve\/.*\/vocab\.txt$/), 1);
    const snapshot = localModelDir('org/tiny');
    for (const f of ['config.json', 'vocab.txt', 'model.safetensors'])
      assert.deepEqual(fs.readFileSync(path.join(snapshot, f)), fs.readFileSync(path.join(TINY, f)), f);
    assert.ok(!fs.readdirSync(blobsOf('org/tiny')).some((f) => f.endsWith('.incomplete')));
    const locks = path.join(process.env.HF_HOME!, 'hub', '.locks', 'models--org--tiny');
    assert.deepEqual(fs.readdirSync(locks), [], 'every lock released');
  });

  test('a blob lock left by a process that died is taken over', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const digest = crypto
      .createHash('sha256')
      .update(fs.readFileSync(path.join(TINY, 'model.safetensors')))
      .digest('hex');
    const lock = path.join(process.env.HF_HOME!, 'hub', '.locks', 'models--org--tiny', `${digest}.childtune.lock`);
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, JSON.stringify({ pid: dead, host: os.hostname(), start: null }));
    const r = await cli(['fetch', 'org/tiny']);
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.err, /waiting for/);
    assert.ok(!fs.existsSync(lock));
  });

  test('a 206 that ignores Range (the body from byte 0) after a cut download: restarted from zero, not appended', async () => {
    const size = fs.statSync(path.join(TINY, 'model.safetensors')).size;
    hub.cut.set('model.safetensors', size >> 1);
    assert.equal((await cli(['fetch', 'org/tiny'])).code, 1);
    const partial = fs.readdirSync(blobsOf('org/tiny')).find((f) => f.endsWith('.incomplete'));
    assert.ok(partial, 'a partial download to resume');
    const kept = fs.statSync(path.join(blobsOf('org/tiny'), partial)).size;
    hub.ignoreRange.add('model.safetensors');
    hub.requests.length = 0;
    const r = await cli(['fetch', 'org/tiny']);
    assert.equal(r.code, 0, r.err);
    const cdn = hub.requests.filter((q) => q.startsWith('GET /cdn/'));
    assert.equal(cdn.length, 2, cdn.join('; '));
    assert.ok(cdn[0].endsWith(`bytes=${kept}-`), 'asked to resume');
    assert.ok(!cdn[1].includes('bytes='), 'then the whole file without a range');
    assert.deepEqual(
      fs.readFileSync(path.join(localModelDir('org/tiny'), 'model.safetensors')),
      fs.readFileSync(path.join(TINY, 'model.safetensors')),
    );
  });

  test('a hub that never answers, a CDN that stalls, and redirect loops: timeouts and limits name the host', async () => {
    const hubHost = new URL(hub.url).host;
    const cdnHost = new URL(hub.cdnUrl).host;
    // Each variable is set low only while its timeout is the one to hit: a loaded machine must not trip the others.
    process.env.HF_HUB_ETAG_TIMEOUT = '0.5';
    hub.silent = true;
    const silent = await cli(['fetch', 'org/tiny']);
    assert.equal(silent.code, 1);
    assert.match(silent.err, new RegExp(`org/tiny: ${hubHost} did not answer within 0\\.5 s`));
    assert.match(silent.err, /hint: .*raise HF_HUB_ETAG_TIMEOUT/);

    delete process.env.HF_HUB_ETAG_TIMEOUT;
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = '0.5';
    hub.reset();
    hub.stall.add('model.safetensors');
    const stalled = await cli(['fetch', 'org/tiny']);
    assert.equal(stalled.code, 1);
    assert.match(
      stalled.err,
      new RegExp(
        `org/tiny: model\\.safetensors: the download broke off after \\d+ bytes \\(${cdnHost} sent no data for 0\\.5 s\\)`,
      ),
    );
    assert.match(stalled.err, /hint: Run the same command again: it resumes .*HF_HUB_DOWNLOAD_TIMEOUT/);
    delete process.env.HF_HUB_DOWNLOAD_TIMEOUT;
    hub.reset();
    const resumed = await cli(['fetch', 'org/tiny']);
    assert.equal(resumed.code, 0, resumed.err);
    assert.ok(
      hub.requests.some((q) => /^GET \/cdn\/.* bytes=\d+-$/.test(q)),
      'the stalled download resumes',
    );

    hub.reset();
    fs.rmSync(process.env.HF_HOME!, { recursive: true });
    hub.loop = 'hub';
    const hubLoop = await cli(['fetch', 'org/tiny']);
    assert.equal(hubLoop.code, 1);
    assert.match(
      hubLoop.err,
      new RegExp(`org/tiny: config\\.json: ${hubHost} redirected more than 10 times in a row \\(a redirect loop\\)`),
    );
    assert.match(hubLoop.err, /hint: Check HF_ENDPOINT/);
    assert.doesNotMatch(hubLoop.err, /ETag/);

    hub.reset();
    hub.loop = 'cdn';
    const cdnLoop = await cli(['fetch', 'org/tiny']);
    assert.equal(cdnLoop.code, 1);
    assert.match(
      cdnLoop.err,
      new RegExp(`org/tiny: model\\.safetensors: ${cdnHost} redirected more than 10 times in a row`),
    );
    assert.match(cdnLoop.err, new RegExp(`hint: The hub sent the download to ${cdnHost}`));

    hub.reset();
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = 'soon';
    const bad = await cli(['fetch', 'org/tiny']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /HF_HUB_DOWNLOAD_TIMEOUT=soon is not a number of seconds/);
  });

  test('a data set: glue/rte from nyu-mll/glue parquet files into datasets--nyu-mll--glue', async () => {
    const r = await cli(['fetch', 'glue/rte']);
    assert.equal(r.code, 0, r.err);
    const snapshot = path.join(
      process.env.HF_HOME!,
      'hub',
      'datasets--nyu-mll--glue',
      'snapshots',
      hub.commitOf('nyu-mll/glue'),
    );
    assert.deepEqual(fs.readdirSync(path.join(snapshot, 'rte')).sort(), [
      'train-00000-of-00001.parquet',
      'validation-00000-of-00001.parquet',
    ]);
    assert.ok(!fs.existsSync(path.join(snapshot, 'cola')), 'only the task asked for');
    assert.ok(hub.requests.includes('GET /api/datasets/nyu-mll/glue/revision/main'));
    assert.ok(hub.requests.some((q) => q.startsWith('HEAD /datasets/nyu-mll/glue/resolve/')));
  });

  test('a recipe naming a hub id and a built-in task without dir runs end to end from the hub; a second run makes no request', async () => {
    const dir = tmpProject();
    const recipe = write(
      dir,
      'r.yaml',
      `version: 1
model: {path: org/tiny, max_seq_length: 32}
dataset:
  task: glue/rte
  subsample: {size: 32, seed: 0}
training: {epochs: 1, batch_size: 16, log_every: 1}
evaluation: {batch_size: 64}
runtime: {threads: 1}
`,
    );
    const offline = await cli(['validate', recipe]);
    assert.equal(offline.code, 1);
    assert.match(offline.err, /error CT0309 model-dir-invalid: model org\/tiny is not in the hub cache/);
    assert.match(offline.err, /childtune fetch org\/tiny/);
    assert.match(offline.err, /error CT0308 data-file-missing: data set glue\/rte is not in the hub cache/);
    assert.match(offline.err, /childtune fetch glue\/rte/);
    const first = await cli(['run', recipe, '--json']);
    assert.equal(first.code, 0, first.err);
    assert.match(first.err, /hub: model org\/tiny is not in the cache: downloading it/);
    assert.match(first.err, /hub: data set glue\/rte is not in the cache: downloading it/);
    const [result] = JSON.parse(first.out);
    assert.equal(result.task, 'glue/rte');
    assert.ok(result.metrics.accuracy >= 0 && result.metrics.accuracy <= 1);
    const log = fs.readFileSync(path.join(result.dir, 'metrics.jsonl'), 'utf8');
    assert.ok(log.includes('"kind":"eval"'));
    const subsample = JSON.parse(fs.readFileSync(path.join(result.dir, 'subsample.json'), 'utf8'));
    assert.match(
      subsample.file,
      /datasets--nyu-mll--glue\/snapshots\/[0-9a-f]{40}\/rte\/train-00000-of-00001\.parquet$/,
    );
    hub.requests.length = 0;
    const second = await cli(['run', recipe, '--json']);
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(hub.requests, [], 'the cache is reused without any request');
    assert.equal(hubCacheDir(), path.join(process.env.HF_HOME!, 'hub'));
  });
});

describe('hub: ids and cache locations', () => {
  test('ids, revisions and what is not an id', () => {
    assert.deepEqual(parseHubId('google-bert/bert-base-uncased'), {
      type: 'model',
      repo: 'google-bert/bert-base-uncased',
      revision: 'main',
    });
    assert.deepEqual(parseHubId('org/name@v1.0'), { type: 'model', repo: 'org/name', revision: 'v1.0' });
    for (const bad of ['./models/bert', '../x/y', '/abs/path', 'a/b/c', 'a--b/c', 'org/', 'org/na me'])
      assert.equal(parseHubId(bad), undefined, bad);
  });
  test('HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub; ~ is expanded', () => {
    assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
    assert.equal(hubCacheDir({ HF_HOME: '~/hf' }), path.join(os.homedir(), 'hf', 'hub'));
    assert.equal(hubCacheDir({}), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });
  test('a cache filled as huggingface_hub fills it is read, and a local directory wins over an id', () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-hf-'));
    const commit = 'a'.repeat(40);
    const folder = path.join(cache, 'models--org--py');
    fs.mkdirSync(path.join(folder, 'blobs'), { recursive: true });
    fs.mkdirSync(path.join(folder, 'snapshots', commit), { recursive: true });
    fs.mkdirSync(path.join(folder, 'refs'));
    fs.writeFileSync(path.join(folder, 'refs', 'main'), commit);
    fs.writeFileSync(path.join(folder, 'blobs', 'b'.repeat(40)), '{}');
    fs.symlinkSync(`../../blobs/${'b'.repeat(40)}`, path.join(folder, 'snapshots', commit, 'config.json'));
    assert.equal(localModelDir('org/py', { HF_HUB_CACHE: cache }), path.join(folder, 'snapshots', commit));
    assert.throws(
      () => localModelDir('org/other', { HF_HUB_CACHE: cache }),
      /model org\/other is not in the hub cache/,
    );
    const cwd = process.cwd();
    const project = tmpProject();
    fs.mkdirSync(path.join(project, 'org', 'py'), { recursive: true });
    process.chdir(project);
    try {
      assert.equal(localModelDir('org/py', { HF_HUB_CACHE: cache }), path.join(project, 'org', 'py'));
    } finally {
      process.chdir(cwd);
    }
  });
});
