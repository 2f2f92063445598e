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

export interface FakeHub {
  url: string;
  /** Every request, as `METHOD path [range]`. */
  requests: string[];
  /** Authorization headers seen. */
  auth: (string | undefined)[];
  /** CDN answers for these files are cut after this many bytes (the socket is destroyed). */
  cut: Map<string, number>;
  /** CDN answers for these files have one byte flipped. */
  corrupt: Set<string>;
  commitOf(id: string): string;
  close(): Promise<void>;
}

const LFS = /\.(safetensors|bin|parquet|h5)$/;
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

/**
 * The hub's endpoints as huggingface_hub uses them, on 127.0.0.1: the revision API, resolve URLs (HEAD and
 * GET, with X-Repo-Commit and the ETags: X-Linked-Etag = sha256 for LFS files behind a redirect to a CDN
 * path, the git blob id for small files), and a CDN honouring Range. 401 for gated repositories without the
 * token, 404 with X-Error-Code for unknown repositories and revisions.
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
  const hub: Omit<FakeHub, 'url' | 'close'> = {
    requests: [],
    auth: [],
    cut: new Map(),
    corrupt: new Set(),
    commitOf: (id) => commits.get(id)!,
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    hub.requests.push(
      `${req.method} ${decodeURIComponent(url.pathname)}${req.headers.range ? ` ${req.headers.range}` : ''}`,
    );
    hub.auth.push(req.headers.authorization);
    const fail = (status: number, code?: string) => {
      res.writeHead(status, code ? { 'x-error-code': code, 'x-error-message': `${code}` } : {});
      res.end();
    };
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const blob = blobs.get(cdn[1]);
      if (!blob) return fail(404);
      let body = blob.body;
      if (hub.corrupt.has(blob.file)) {
        body = Buffer.from(body);
        body[body.length >> 1] ^= 0xff;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const from = range ? Number(range[1]) : 0;
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
      return res.end(body.subarray(from));
    }
    const api = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const type = api ? (api[1] === 'models' ? 'model' : 'dataset') : resolve?.[1] ? 'dataset' : 'model';
    const id = api?.[2] ?? resolve?.[2];
    const repo = repos.find((r) => r.id === id && r.type === type);
    if (!repo) return fail(401, 'RepoNotFound'); // the hub answers 401 for unknown repositories to anonymous users
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return fail(401, 'GatedRepo');
    const revision = decodeURIComponent((api ?? resolve)![3]);
    const commit = commits.get(repo.id)!;
    if (revision !== 'main' && revision !== commit && revision !== 'refs/convert/parquet')
      return fail(404, 'RevisionNotFound');
    if (api) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          id: repo.id,
          sha: commit,
          siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })),
        }),
      );
    }
    const file = decodeURIComponent(resolve![4]);
    const body = repo.files[file];
    if (!body) return fail(404, 'EntryNotFound');
    if (LFS.test(file)) {
      res.writeHead(302, {
        location: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cdn/${sha256(body)}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${sha256(body)}"`,
        'x-linked-size': String(body.length),
        etag: '"lfs-pointer"',
      });
      return res.end();
    }
    res.writeHead(200, { 'x-repo-commit': commit, etag: `"${gitSha1(body)}"`, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    ...hub,
    url,
    close: () =>
      new Promise((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  } as FakeHub;
}
