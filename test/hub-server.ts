import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A repository the fake hub serves: files by path, LFS ones (by extension) through a CDN redirect. */
export interface FakeRepo {
  type: 'model' | 'dataset';
  id: string;
  files: Record<string, Buffer>;
  /** Gated: every request needs `Authorization: Bearer <token>`. */
  token?: string;
}

/** Ways the hub and its CDN misbehave on purpose; `reset()` clears them all. */
export interface Faults {
  /** CDN answers for these files are cut after this many bytes (the socket is destroyed). */
  cut: Map<string, number>;
  /** CDN answers for these files have one byte flipped. */
  corrupt: Set<string>;
  /** Resolve answers for these files carry this ETag (X-Linked-Etag for LFS files) instead of the true one. */
  etags: Map<string, string>;
  /** Names added to every listing's siblings (paths out of the snapshot). */
  extraSiblings: string[];
  /** This commit id instead of the true one in the revision API's answer. */
  listedCommit?: string;
  /** CDN answers to Range requests for these files: 206 with the whole body from byte 0. */
  ignoreRange: Set<string>;
  /** CDN answers for these files send half the body, then nothing, never ending. */
  stall: Set<string>;
  /** CDN answers for these files pause after half the body until this many HEADs for the file have arrived. */
  hold: Map<string, number>;
  /** The hub accepts connections and never answers. */
  silent: boolean;
  /** Redirect loops: the hub's resolve URLs redirect to themselves, or the CDN redirects to itself. */
  loop?: 'hub' | 'cdn';
}

export interface FakeHub extends Faults {
  url: string;
  /** The CDN's origin (another port of 127.0.0.1, so another origin, as cdn-lfs.huggingface.co is). */
  cdnUrl: string;
  /** Every request to hub and CDN, as `METHOD path [range]`. */
  requests: string[];
  /** Authorization headers the hub saw. */
  auth: (string | undefined)[];
  /** Authorization headers the CDN saw. */
  cdnAuth: (string | undefined)[];
  commitOf(id: string): string;
  reset(): void;
  close(): Promise<void>;
}

const LFS = /\.(safetensors|bin|parquet|h5)$/;
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

const noFaults = (): Faults => ({
  cut: new Map(),
  corrupt: new Set(),
  etags: new Map(),
  extraSiblings: [],
  listedCommit: undefined,
  ignoreRange: new Set(),
  stall: new Set(),
  hold: new Map(),
  silent: false,
  loop: undefined,
});

/**
 * The hub's endpoints as huggingface_hub uses them, on 127.0.0.1: the revision API, resolve URLs (HEAD and
 * GET, with X-Repo-Commit and the ETags: X-Linked-Etag = sha256 for LFS files behind a redirect to a CDN on
 * another port, the git blob id for small files), and the CDN honouring Range. 401 for gated repositories
 * without the token, 404 with X-Error-Code for unknown repositories and revisions. The Faults make it
 * misbehave as a broken or hostile mirror would.
 */
export async function startFakeHub(repos: FakeRepo[]): Promise<FakeHub> {
  const commits = new Map(
    repos.map((r) => [
      r.id,
      crypto
        .createHash('sha1')
        .update(r.id + Object.keys(r.files).join())
        .digest('hex'),
    ]),
  );
  const blobs = new Map<string, { file: string; body: Buffer }>();
  for (const r of repos)
    for (const [f, b] of Object.entries(r.files)) if (LFS.test(f)) blobs.set(sha256(b), { file: f, body: b });
  const hub = {
    ...noFaults(),
    requests: [] as string[],
    auth: [] as (string | undefined)[],
    cdnAuth: [] as (string | undefined)[],
    commitOf: (id: string) => commits.get(id)!,
    reset: () => Object.assign(hub, noFaults()),
  };
  const heads = new Map<string, number>();
  const waiting: (() => void)[] = [];
  const record = (req: http.IncomingMessage, url: URL) =>
    hub.requests.push(
      `${req.method} ${decodeURIComponent(url.pathname)}${req.headers.range ? ` ${req.headers.range}` : ''}`,
    );
  const fail = (res: http.ServerResponse, status: number, code?: string) => {
    res.writeHead(status, code ? { 'x-error-code': code, 'x-error-message': `${code}` } : {});
    res.end();
  };

  const cdn = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    record(req, url);
    hub.cdnAuth.push(req.headers.authorization);
    if (hub.loop === 'cdn') {
      res.writeHead(302, { location: `${cdnUrl}/cdn/loop/${hub.requests.length}` });
      return res.end();
    }
    const match = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    const blob = match && blobs.get(match[1]);
    if (!blob) return fail(res, 404);
    let body = blob.body;
    if (hub.corrupt.has(blob.file)) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const from = range && !hub.ignoreRange.has(blob.file) ? Number(range[1]) : 0;
    res.writeHead(range ? 206 : 200, {
      'content-length': body.length - from,
      ...(range ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}),
    });
    const cutAt = hub.cut.get(blob.file);
    if (cutAt !== undefined && cutAt > from) {
      hub.cut.delete(blob.file);
      res.write(body.subarray(from, cutAt), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    const half = from + ((body.length - from) >> 1);
    if (hub.stall.has(blob.file)) return void res.write(body.subarray(from, half));
    const heldFor = hub.hold.get(blob.file);
    if (heldFor !== undefined) {
      hub.hold.delete(blob.file);
      res.write(body.subarray(from, half));
      const release = () =>
        (heads.get(blob.file) ?? 0) >= heldFor ? res.end(body.subarray(half)) : waiting.push(release);
      return release();
    }
    res.end(body.subarray(from));
  });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    record(req, url);
    hub.auth.push(req.headers.authorization);
    if (hub.silent) return; // the socket stays open, unanswered, until the client gives up or close()
    const api = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const type = api ? (api[1] === 'models' ? 'model' : 'dataset') : resolve?.[1] ? 'dataset' : 'model';
    const id = api?.[2] ?? resolve?.[2];
    const repo = repos.find((r) => r.id === id && r.type === type);
    if (!repo) return fail(res, 401, 'RepoNotFound'); // the hub answers 401 for unknown repositories to anonymous users
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return fail(res, 401, 'GatedRepo');
    const revision = decodeURIComponent((api ?? resolve)![3]);
    const commit = commits.get(repo.id)!;
    if (revision !== 'main' && revision !== commit && revision !== 'refs/convert/parquet')
      return fail(res, 404, 'RevisionNotFound');
    if (api) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          id: repo.id,
          sha: hub.listedCommit ?? commit,
          siblings: [...Object.keys(repo.files), ...hub.extraSiblings].map((rfilename) => ({ rfilename })),
        }),
      );
    }
    if (hub.loop === 'hub') {
      res.writeHead(307, { location: url.pathname });
      return res.end();
    }
    const file = decodeURIComponent(resolve![4]);
    const body = repo.files[file];
    if (!body) return fail(res, 404, 'EntryNotFound');
    if (req.method === 'HEAD') {
      heads.set(file, (heads.get(file) ?? 0) + 1);
      waiting.splice(0).forEach((w) => w());
    }
    const etag = hub.etags.get(file);
    if (LFS.test(file)) {
      res.writeHead(302, {
        location: `${cdnUrl}/cdn/${sha256(body)}`,
        'x-repo-commit': commit,
        'x-linked-etag': etag ?? `"${sha256(body)}"`,
        'x-linked-size': String(body.length),
        etag: '"lfs-pointer"',
      });
      return res.end();
    }
    res.writeHead(200, { 'x-repo-commit': commit, etag: etag ?? `"${gitSha1(body)}"`, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });

  const listen = async (s: http.Server) => {
    await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const url = await listen(server);
  const cdnUrl = await listen(cdn);
  const close = (s: http.Server) =>
    new Promise<void>((ok) => {
      s.closeAllConnections();
      s.close(() => ok());
    });
  return Object.assign(hub, {
    url,
    cdnUrl,
    close: async () => {
      await Promise.all([close(server), close(cdn)]);
    },
  });
}
