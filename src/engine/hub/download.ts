import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  cachedSnapshot,
  hubCacheDir,
  hubEndpoint,
  hubIdOf,
  HubError,
  isOffline,
  notFetchedHint,
  repoFolder,
  snapshotFiles,
  type HubRef,
} from './cache.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Progress of one file's download: `already` bytes were there from an interrupted attempt. */
export type ProgressFactory = (
  file: string,
  total: number,
  already: number,
) => { tick(bytes: number): void; end(): void };

export interface FetchOptions {
  env?: Env;
  progress?: ProgressFactory;
  log?: (line: string) => void;
}

export interface FetchResult {
  snapshot: string;
  commit: string;
  files: string[];
  /** Files that were transferred (the rest were in the cache already). */
  downloaded: string[];
}

/**
 * Downloads the files `choose` picks from a repository's listing into the hub cache, as huggingface_hub's
 * snapshot_download does: the listing (and the commit it belongs to) from /api/{type}s/{repo}/revision/{rev};
 * each file through /resolve/{commit}/{file} into blobs/{etag}, resumed from blobs/{etag}.incomplete with a
 * Range request, verified against its ETag, and linked from snapshots/{commit}/; refs/{revision} is written
 * once every file is in place. Offline (HF_HUB_OFFLINE), nothing is requested: the cache must hold it.
 */
export async function fetchRepo(
  ref: HubRef,
  choose: (files: string[]) => string[],
  opts: FetchOptions = {},
): Promise<FetchResult> {
  const env = opts.env ?? process.env;
  const id = hubIdOf(ref);
  if (isOffline(env)) {
    const snapshot = cachedSnapshot(ref, env);
    if (!snapshot)
      throw new HubError(
        `${ref.type} ${id} is not in the hub cache (${hubCacheDir(env)}) and HF_HUB_OFFLINE is set, so it cannot be downloaded`,
        notFetchedHint(id, env),
      );
    const files = choose(snapshotFiles(snapshot));
    return { snapshot, commit: path.basename(snapshot), files, downloaded: [] };
  }
  const pinned = /^[0-9a-f]{40}$/.test(ref.revision) ? cachedSnapshot(ref, env) : undefined;
  if (pinned) {
    // A commit never changes: if its snapshot holds everything, no request is needed.
    const files = (() => {
      try {
        return choose(snapshotFiles(pinned));
      } catch {
        return undefined;
      }
    })();
    if (files?.every((f) => fs.existsSync(path.join(pinned, ...f.split('/')))))
      return { snapshot: pinned, commit: ref.revision, files, downloaded: [] };
  }
  const client = new HubClient(env);
  const info = await client.json<{ sha?: string; siblings?: { rfilename: string }[] }>(
    `/api/${ref.type}s/${ref.repo}/revision/${encodeURIComponent(ref.revision)}`,
    id,
  );
  const commit = info.sha;
  if (!commit || !/^[0-9a-f]{40}$/.test(commit) || !Array.isArray(info.siblings))
    throw new HubError(
      `${id}: the hub's listing has no commit or file list`,
      'Check HF_ENDPOINT: it must point at a Hugging Face hub or a mirror of its API.',
    );
  const files = choose(info.siblings.map((s) => s.rfilename));
  const folder = repoFolder(ref, env);
  const snapshot = path.join(folder, 'snapshots', commit);
  const downloaded: string[] = [];
  for (const file of files) {
    const pointer = path.join(snapshot, ...file.split('/'));
    if (fs.existsSync(pointer)) continue;
    await client.download({ ...ref, revision: commit }, id, file, folder, pointer, opts.progress);
    downloaded.push(file);
  }
  if (ref.revision !== commit) writeRef(folder, ref.revision, commit);
  opts.log?.(
    `${id}: ${downloaded.length ? `downloaded ${downloaded.length} of ${files.length} files` : `all ${files.length} files already in the cache`} (commit ${commit.slice(0, 12)}) -> ${snapshot}`,
  );
  return { snapshot, commit, files, downloaded };
}

function writeRef(folder: string, revision: string, commit: string) {
  const file = path.join(folder, 'refs', ...revision.split('/'));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, commit);
  fs.renameSync(tmp, file);
}

/** What a HEAD on a resolve URL tells, as huggingface_hub reads it. */
interface FileMetadata {
  etag: string;
  size?: number;
  /** Where the content is (a CDN after an absolute redirect), else the resolve URL itself. */
  location: string;
}

class HubClient {
  private readonly endpoint: string;
  private readonly headers: Record<string, string>;

  constructor(env: Env) {
    this.endpoint = hubEndpoint(env);
    const token = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
    this.headers = {
      'user-agent': 'childtune (huggingface_hub-compatible cache)',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    };
  }

  private async request(url: string, init: RequestInit, what: string): Promise<Response> {
    try {
      return await fetch(url, {
        ...init,
        headers: { ...this.headers, ...(init.headers as Record<string, string> | undefined) },
      });
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new HubError(
        `${what}: cannot reach ${this.endpoint} (${cause})`,
        'Check the network, set HF_ENDPOINT to a mirror, or set HF_HUB_OFFLINE=1 to use the cache only.',
      );
    }
  }

  async json<T>(apiPath: string, what: string): Promise<T> {
    const res = await this.request(this.endpoint + apiPath, {}, what);
    if (!res.ok) throw this.failure(res, what);
    try {
      return (await res.json()) as T;
    } catch {
      throw new HubError(
        `${what}: the hub's answer to ${apiPath} is not JSON`,
        'Check HF_ENDPOINT: it must point at a Hugging Face hub or a mirror of its API.',
      );
    }
  }

  private failure(res: Response, what: string): HubError {
    const code = res.headers.get('x-error-code');
    const hubSays = res.headers.get('x-error-message');
    const said = hubSays ? ` (${hubSays})` : '';
    if (res.status === 401)
      return new HubError(
        `${what}: the hub answered 401 Unauthorized${said}: the repository is gated or private, or does not exist`,
        'Check the id; for a gated or private repository set HF_TOKEN to an access token of an account that has access.',
      );
    if (res.status === 403)
      return new HubError(
        `${what}: the hub answered 403 Forbidden${said}`,
        code === 'GatedRepo'
          ? 'Accept the conditions on the repository page with the account whose token HF_TOKEN holds.'
          : 'The token in HF_TOKEN has no access to this repository.',
      );
    if (res.status === 404)
      return new HubError(
        `${what}: not found on ${this.endpoint}${code ? ` (${code})` : ''}${said}`,
        code === 'RevisionNotFound'
          ? 'Check the revision after @.'
          : code === 'EntryNotFound'
            ? 'The repository has no such file at this revision.'
            : 'Check the id (org/name) and the revision.',
      );
    return new HubError(
      `${what}: the hub answered ${res.status} ${res.statusText}${said}`,
      res.status >= 500 ? 'The hub or mirror failed; try again later.' : undefined,
    );
  }

  private resolveUrl(ref: HubRef, file: string) {
    const prefix = ref.type === 'dataset' ? 'datasets/' : '';
    return `${this.endpoint}/${prefix}${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** HEAD without following absolute redirects (they lead to the CDN, whose headers describe nothing); relative ones (renamed repositories) are followed. */
  private async metadata(ref: HubRef, what: string, file: string): Promise<FileMetadata> {
    let url = this.resolveUrl(ref, file);
    for (let hops = 0; ; hops++) {
      const res = await this.request(
        url,
        { method: 'HEAD', redirect: 'manual', headers: { 'accept-encoding': 'identity' } },
        what,
      );
      const location = res.headers.get('location');
      const redirect = res.status >= 300 && res.status < 400 && location;
      if (redirect && location.startsWith('/') && hops < 5) {
        url = new URL(location, url).href;
        continue;
      }
      if (!redirect && !res.ok) throw this.failure(res, what);
      const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
      if (!etag)
        throw new HubError(
          `${what}: the hub sent no ETag, so the file cannot be cached or verified`,
          "Check HF_ENDPOINT: a mirror must pass the hub's ETag and X-Linked-Etag headers through.",
        );
      const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
      return {
        etag,
        size: Number.isFinite(size) ? size : undefined,
        location: redirect ? new URL(location, url).href : url,
      };
    }
  }

  /** Downloads one file of `ref` (revision: a commit) into folder/blobs and links it at pointer; `id` names the repository in messages. */
  async download(ref: HubRef, id: string, file: string, folder: string, pointer: string, progress?: ProgressFactory) {
    const what = `${id}: ${file}`;
    const meta = await this.metadata(ref, what, file);
    const blob = path.join(folder, 'blobs', meta.etag);
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    if (!fs.existsSync(blob)) {
      const partial = `${blob}.incomplete`;
      let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
      if (meta.size !== undefined && have > meta.size) have = 0;
      if (meta.size === undefined || have < meta.size) {
        // Identity encoding: byte ranges and sizes must refer to the stored file, not a compressed stream.
        const res = await this.request(
          meta.location,
          { headers: { 'accept-encoding': 'identity', ...(have ? { range: `bytes=${have}-` } : {}) } },
          what,
        );
        if (!res.ok || !res.body) throw this.failure(res, what);
        if (have && res.status !== 206) have = 0; // the server ignored the range: start over
        const bar = progress?.(file, meta.size ?? have + Number(res.headers.get('content-length') ?? 0), have);
        const fd = fs.openSync(partial, have ? 'a' : 'w');
        let done = have;
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            fs.writeSync(fd, chunk);
            done += chunk.length;
            bar?.tick(done);
          }
        } catch (e) {
          throw new HubError(
            `${what}: the download broke off after ${done} bytes (${(e as Error).message})`,
            'Run the same command again: it resumes from where it stopped.',
          );
        } finally {
          fs.closeSync(fd);
          bar?.end();
        }
      }
      verify(partial, meta, what);
      fs.renameSync(partial, blob);
    }
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    const tmp = `${pointer}.tmp-${process.pid}`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(path.relative(path.dirname(pointer), blob), tmp);
    fs.renameSync(tmp, pointer);
  }
}

/** `W/"abc"` and `"abc"` name the same blob `abc`. */
export const normalizeEtag = (etag: string | null) => etag?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;

/**
 * Checks a finished download against its ETag: a 64-hex ETag is the sha256 of an LFS file, a 40-hex one the
 * git blob id of a small file. A mismatch removes the file (so a retry starts clean) and fails.
 */
function verify(file: string, meta: FileMetadata, what: string) {
  const size = fs.statSync(file).size;
  const fail = (why: string) => {
    fs.rmSync(file, { force: true });
    return new HubError(
      `${what}: the downloaded file is corrupt (${why}); it was removed`,
      'Run the same command again; if this repeats, the server (HF_ENDPOINT) serves content that does not match its checksum.',
    );
  };
  if (meta.size !== undefined && size !== meta.size) throw fail(`${size} bytes, expected ${meta.size}`);
  const kind = /^[0-9a-f]{64}$/.test(meta.etag) ? 'sha256' : /^[0-9a-f]{40}$/.test(meta.etag) ? 'git-sha1' : undefined;
  if (!kind) return; // an ETag of another form (some mirrors) names the blob but cannot verify it
  const hash = crypto.createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') hash.update(`blob ${size}\0`);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  const got = hash.digest('hex');
  if (got !== meta.etag) throw fail(`${kind} ${got}, expected ${meta.etag}`);
}
