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
  isSafeRelativePath,
  notFetchedHint,
  repoFolder,
  snapshotFiles,
  type HubRef,
} from './cache.js';
import { withFileLock } from './lock.js';

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
 * Range request, verified against its ETag (which must be a digest: it becomes the blob's name), and linked
 * from snapshots/{commit}/; refs/{revision} is written once every file is in place. Blobs are written under a
 * lock (.locks/), so processes sharing the cache download each one once. Offline (HF_HUB_OFFLINE), nothing is requested: the cache must hold it.
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
  const commit = info?.sha;
  if (typeof commit !== 'string' || !/^[0-9a-f]{40}$/.test(commit) || !Array.isArray(info.siblings))
    throw new HubError(
      `${id}: the hub's listing has no commit id (40 hex digits) or file list`,
      'Check HF_ENDPOINT: it must point at a Hugging Face hub or a mirror of its API.',
    );
  const listing = info.siblings.map((s) => s?.rfilename);
  // File names become paths under snapshots/<commit>/: one that would leave it means a broken or hostile server.
  const unsafe = listing.find((f) => typeof f !== 'string' || !isSafeRelativePath(f));
  if (unsafe !== undefined)
    throw new HubError(
      `${id}: the hub's listing names a file outside the repository (${JSON.stringify(unsafe)}); nothing was downloaded`,
      'Check HF_ENDPOINT: it must point at a Hugging Face hub or a trustworthy mirror of its API.',
    );
  const files = choose(listing as string[]);
  const folder = repoFolder(ref, env);
  const snapshot = path.join(folder, 'snapshots', commit);
  const downloaded: string[] = [];
  for (const file of files) {
    const pointer = path.join(snapshot, ...file.split('/'));
    if (fs.existsSync(pointer)) continue;
    if (await client.download({ ...ref, revision: commit }, id, file, folder, pointer, opts.progress, opts.log))
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
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomUUID()}`;
  fs.writeFileSync(tmp, commit);
  fs.renameSync(tmp, file);
}

/** What a HEAD on a resolve URL tells, as huggingface_hub reads it. */
interface FileMetadata {
  /** A sha256 (LFS files) or git blob id (others): the blob's name in the cache and its checksum. */
  etag: string;
  size?: number;
  /** Where the content is (a CDN after an absolute redirect), else the resolve URL itself. */
  location: string;
}

/** The only ETags that name a blob: huggingface_hub's blob names are the hub's sha256 or git blob id. */
const DIGEST = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const MAX_REDIRECTS = 10;

type TimeoutVariable = 'HF_HUB_ETAG_TIMEOUT' | 'HF_HUB_DOWNLOAD_TIMEOUT';

/** huggingface_hub's timeouts, in seconds (10 unless set): for metadata and listings, and for a download's data. */
function timeoutOf(env: Env, name: TimeoutVariable): number {
  const text = env[name];
  if (text === undefined || text === '') return 10;
  const seconds = Number(text);
  if (!(seconds > 0) || !Number.isFinite(seconds))
    throw new HubError(`${name}=${text} is not a number of seconds`, `Set ${name} to a positive number, or unset it.`);
  return seconds;
}

/** An answer whose headers came in time; its body is read through `chunks`, each within the timeout. */
interface Reply {
  res: Response;
  /** The URL that answered, after the redirects followed. */
  url: string;
  chunks(): AsyncGenerator<Uint8Array>;
}

class HubClient {
  private readonly endpoint: string;
  private readonly token?: string;
  private readonly timeouts: Record<TimeoutVariable, number>;

  constructor(env: Env) {
    this.endpoint = hubEndpoint(env);
    this.token = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
    this.timeouts = {
      HF_HUB_ETAG_TIMEOUT: timeoutOf(env, 'HF_HUB_ETAG_TIMEOUT'),
      HF_HUB_DOWNLOAD_TIMEOUT: timeoutOf(env, 'HF_HUB_DOWNLOAD_TIMEOUT'),
    };
  }

  private isHub = (url: string) => new URL(url).origin === new URL(this.endpoint).origin;

  /**
   * One request, following redirects itself, at most MAX_REDIRECTS (absolute ones only when `followAbsolute`):
   * the token goes to HF_ENDPOINT's origin only, as huggingface_hub sends it, never to a CDN. Identity encoding:
   * byte ranges and sizes must refer to the stored file, not a compressed stream.
   */
  private async request(
    url: string,
    opts: { method?: 'HEAD'; from?: number; followAbsolute: boolean; timeout: TimeoutVariable },
    what: string,
  ): Promise<Reply> {
    const seconds = this.timeouts[opts.timeout];
    for (let hops = 0; ; hops++) {
      if (!/^https?:$/.test(new URL(url).protocol))
        throw new HubError(
          `${what}: ${url} is not an http(s) URL, so it is not requested`,
          'Check HF_ENDPOINT: it must point at a Hugging Face hub or a mirror of its API.',
        );
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          timedOut = true;
          controller.abort();
        }, seconds * 1000);
      };
      arm();
      let res: Response;
      try {
        res = await fetch(url, {
          method: opts.method ?? 'GET',
          redirect: 'manual',
          signal: controller.signal,
          headers: {
            'user-agent': 'childtune (huggingface_hub-compatible cache)',
            'accept-encoding': 'identity',
            ...(opts.from ? { range: `bytes=${opts.from}-` } : {}),
            ...(this.token && this.isHub(url) ? { authorization: `Bearer ${this.token}` } : {}),
          },
        });
      } catch (e) {
        const host = new URL(url).host;
        if (timedOut)
          throw new HubError(
            `${what}: ${host} did not answer within ${seconds} s`,
            `Check the network and HF_ENDPOINT; on a slow link raise ${opts.timeout} (seconds, default 10).`,
          );
        const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
        throw new HubError(
          `${what}: cannot reach ${host} (${cause})`,
          'Check the network, set HF_ENDPOINT to a mirror, or set HF_HUB_OFFLINE=1 to use the cache only.',
        );
      } finally {
        clearTimeout(timer);
      }
      const location = res.headers.get('location');
      const relative = location?.startsWith('/') && !location.startsWith('//');
      if (res.status >= 300 && res.status < 400 && location && (relative || opts.followAbsolute)) {
        await res.body?.cancel();
        const next = new URL(location, url);
        if (hops === MAX_REDIRECTS)
          throw new HubError(
            `${what}: ${new URL(url).host} redirected more than ${MAX_REDIRECTS} times in a row (a redirect loop), last to ${next.href}`,
            this.isHub(url)
              ? 'Check HF_ENDPOINT: the hub or mirror there is misconfigured.'
              : `The hub sent the download to ${new URL(url).host}, which is misconfigured; try again later.`,
          );
        url = next.href;
        continue;
      }
      async function* chunks() {
        const reader = res.body!.getReader();
        let finished = false;
        try {
          for (;;) {
            arm();
            const { done, value } = await reader.read();
            if (done) break;
            yield value;
          }
          finished = true;
        } catch (e) {
          throw timedOut ? new Stalled(`sent no data for ${seconds} s`) : e;
        } finally {
          clearTimeout(timer);
          if (!finished) await reader.cancel().catch(() => {});
        }
      }
      return { res, url, chunks };
    }
  }

  async json<T>(apiPath: string, what: string): Promise<T> {
    const reply = await this.request(
      this.endpoint + apiPath,
      { followAbsolute: true, timeout: 'HF_HUB_ETAG_TIMEOUT' },
      what,
    );
    if (!reply.res.ok || !reply.res.body) throw this.failure(reply, what);
    const parts: Uint8Array[] = [];
    try {
      for await (const chunk of reply.chunks()) parts.push(chunk);
    } catch (e) {
      throw new HubError(
        `${what}: the answer to ${apiPath} broke off (${describe(e, reply.url)})`,
        'Run the same command again; on a slow link raise HF_HUB_ETAG_TIMEOUT (seconds, default 10).',
      );
    }
    try {
      return JSON.parse(Buffer.concat(parts).toString('utf8')) as T;
    } catch {
      throw new HubError(
        `${what}: the hub's answer to ${apiPath} is not JSON`,
        'Check HF_ENDPOINT: it must point at a Hugging Face hub or a mirror of its API.',
      );
    }
  }

  private failure({ res, url }: Reply, what: string): HubError {
    const code = res.headers.get('x-error-code');
    const hubSays = res.headers.get('x-error-message');
    const said = hubSays ? ` (${hubSays})` : '';
    if (!this.isHub(url))
      return new HubError(
        `${what}: ${new URL(url).host}, where the hub sent the download, answered ${res.status} ${res.statusText}`,
        res.status >= 500
          ? 'That server failed; try again later.'
          : "Run the same command again (the hub's download links expire); if this repeats, the hub or mirror (HF_ENDPOINT) is misconfigured.",
      );
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

  /**
   * HEAD without following absolute redirects (they lead to the CDN, whose headers describe nothing); relative
   * ones (renamed repositories) are followed. The ETag must be a digest: it becomes a file name in the cache.
   */
  private async metadata(ref: HubRef, what: string, file: string): Promise<FileMetadata> {
    const reply = await this.request(
      this.resolveUrl(ref, file),
      { method: 'HEAD', followAbsolute: false, timeout: 'HF_HUB_ETAG_TIMEOUT' },
      what,
    );
    const { res } = reply;
    const location = res.headers.get('location');
    const redirect = res.status >= 300 && res.status < 400 && location;
    if (!redirect && !res.ok) throw this.failure(reply, what);
    const header = res.headers.has('x-linked-etag') ? 'X-Linked-Etag' : 'ETag';
    const sent = res.headers.get(header);
    const etag = normalizeEtag(sent);
    if (!etag)
      throw new HubError(
        `${what}: the hub sent no ETag, so the file cannot be cached or verified`,
        "Check HF_ENDPOINT: a mirror must pass the hub's ETag and X-Linked-Etag headers through.",
      );
    if (!DIGEST.test(etag))
      throw new HubError(
        `${what}: the hub's ${header} header (${JSON.stringify(sent)}) is not a sha256 or git blob id, so it can neither name the file in the cache nor verify it; nothing was written`,
        "Check HF_ENDPOINT: it must be a Hugging Face hub or a mirror that passes the hub's ETag and X-Linked-Etag headers through unchanged.",
      );
    const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
    return {
      etag,
      size: Number.isSafeInteger(size) && size >= 0 ? size : undefined,
      location: redirect ? new URL(location, reply.url).href : reply.url,
    };
  }

  /**
   * Downloads one file of `ref` (revision: a commit) into folder/blobs and links it at pointer; `id` names the
   * repository in messages. The blob is written under its lock in .locks/, so that processes sharing the cache
   * download it once. False when it was in the cache already (or another process put it there meanwhile).
   */
  async download(
    ref: HubRef,
    id: string,
    file: string,
    folder: string,
    pointer: string,
    progress?: ProgressFactory,
    log?: (line: string) => void,
  ): Promise<boolean> {
    const what = `${id}: ${file}`;
    const meta = await this.metadata(ref, what, file);
    const blob = path.join(folder, 'blobs', meta.etag);
    let transferred = false;
    if (!fs.existsSync(blob)) {
      const lock = path.join(path.dirname(folder), '.locks', path.basename(folder), `${meta.etag}.childtune.lock`);
      await withFileLock(
        lock,
        (holder) => log?.(`${what}: waiting for ${holder}, which is downloading it into the same cache`),
        async () => {
          if (fs.existsSync(blob)) return;
          await this.transfer(meta, blob, what, file, progress);
          transferred = true;
        },
      );
    }
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    const tmp = `${pointer}.tmp-${process.pid}-${crypto.randomUUID()}`;
    fs.symlinkSync(path.relative(path.dirname(pointer), blob), tmp);
    fs.renameSync(tmp, pointer);
    return transferred;
  }

  /** Fetches a blob into blob.incomplete, resumed with a Range request where one is there, verified, renamed into place. */
  private async transfer(meta: FileMetadata, blob: string, what: string, file: string, progress?: ProgressFactory) {
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    const partial = `${blob}.incomplete`;
    let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    if (meta.size !== undefined && have > meta.size) have = 0;
    if (meta.size === undefined || have < meta.size) {
      const get = (from: number) =>
        this.request(meta.location, { from, followAbsolute: true, timeout: 'HF_HUB_DOWNLOAD_TIMEOUT' }, what);
      let reply = await get(have);
      if (have && reply.res.status === 206 && !continues(reply.res, have, meta.size)) {
        // A 206 for other bytes than asked (from 0, say): appending it would splice two pieces. Start over.
        await reply.res.body?.cancel();
        have = 0;
        reply = await get(0);
      }
      const { res } = reply;
      if (!res.ok || !res.body) throw this.failure(reply, what);
      if (have && res.status !== 206) have = 0; // the server ignored the range: this is the whole file
      const bar = progress?.(file, meta.size ?? have + Number(res.headers.get('content-length') ?? 0), have);
      const fd = fs.openSync(partial, have ? 'a' : 'w');
      let done = have;
      try {
        for await (const chunk of reply.chunks()) {
          fs.writeSync(fd, chunk);
          done += chunk.length;
          bar?.tick(done);
        }
      } catch (e) {
        throw new HubError(
          `${what}: the download broke off after ${done} bytes (${describe(e, reply.url)})`,
          'Run the same command again: it resumes from where it stopped. On a slow link raise HF_HUB_DOWNLOAD_TIMEOUT (seconds, default 10).',
        );
      } finally {
        fs.closeSync(fd);
        bar?.end();
      }
    }
    verify(partial, meta, what);
    fs.renameSync(partial, blob);
  }
}

/** A body that sent nothing for the timeout. */
class Stalled extends Error {}

/** Why a body broke off, naming the host that sent it. */
const describe = (e: unknown, url: string) =>
  `${new URL(url).host}${e instanceof Stalled ? ' ' : ': '}${(e as Error).message}`;

/** Whether a 206's Content-Range starts where the partial file ends (and, when known, ends with the file). */
function continues(res: Response, from: number, size?: number): boolean {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
  if (!m || Number(m[1]) !== from) return false;
  return size === undefined || (Number(m[2]) === size - 1 && (m[3] === '*' || Number(m[3]) === size));
}

/** `W/"abc"` and `"abc"` name the same blob `abc`. */
const normalizeEtag = (etag: string | null) => etag?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;

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
  const kind = meta.etag.length === 64 ? 'sha256' : 'git-sha1';
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
