import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChildtuneError } from '../errors.js';

/**
 * The Hugging Face hub cache, laid out as Python's huggingface_hub lays it out, so either tool reuses the
 * other's downloads:
 *   <cache>/models--org--name/refs/<revision>      the commit a branch or tag pointed to when last fetched
 *   <cache>/models--org--name/snapshots/<commit>/  the repository's files, as relative links into blobs/
 *   <cache>/models--org--name/blobs/<etag>         file contents, named by the hub's ETag (sha256 for LFS files)
 */
export type RepoType = 'model' | 'dataset';

export interface HubRef {
  type: RepoType;
  /** `org/name`. */
  repo: string;
  /** Branch, tag or commit; `main` unless the id says `@revision`. */
  revision: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** `~` and `~/...` name the home directory, as a shell would expand them. */
export const expandHome = (p: string) =>
  p === '~' ? os.homedir() : p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p;

/** HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's order). */
export function hubCacheDir(env: Env = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (explicit) return path.resolve(expandHome(explicit));
  const home = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
  return path.resolve(expandHome(home), 'hub');
}

export const hubEndpoint = (env: Env = process.env) =>
  (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');

/** HF_HUB_OFFLINE=1 (or true/yes/on) forbids every request. */
export const isOffline = (env: Env = process.env) =>
  ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? '').toLowerCase());

/** The hub's repository-name rule: word characters, '-' and '.', no '--' or '..', at most 96 characters. */
const NAME = /^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?$/;

/** Parses `org/name` or `org/name@revision`; undefined if the text is not of that form. */
export function parseHubId(text: string, type: RepoType = 'model'): HubRef | undefined {
  const at = text.indexOf('@');
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? 'main' : text.slice(at + 1);
  const parts = repo.split('/');
  if (
    parts.length !== 2 ||
    repo.length > 96 ||
    !parts.every((p) => NAME.test(p) && !p.includes('--') && !p.includes('..'))
  )
    return undefined;
  if (/\s/.test(revision) || !isSafeRelativePath(revision)) return undefined;
  return { type, repo, revision };
}

/**
 * A '/'-separated path that stays inside the directory it is joined to: no empty, '.' or '..' segment, not
 * absolute, no backslash or control character. Revisions (refs/<revision>) and the hub's file names
 * (snapshots/<commit>/<file>) must be such paths before they become files.
 */
export const isSafeRelativePath = (p: string) =>
  p !== '' &&
  !/[\\\0-\x1f]/.test(p) &&
  p.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');

export const hubIdOf = (ref: HubRef) => (ref.revision === 'main' ? ref.repo : `${ref.repo}@${ref.revision}`);

/** `models--org--name` or `datasets--org--name`. */
export const repoFolder = (ref: Pick<HubRef, 'type' | 'repo'>, env?: Env) =>
  path.join(hubCacheDir(env), `${ref.type}s--${ref.repo.split('/').join('--')}`);

const COMMIT = /^[0-9a-f]{40}$/;

/** The commit a revision resolves to in the cache: a commit itself, or what refs/<revision> recorded. */
export function cachedCommit(ref: HubRef, env?: Env): string | undefined {
  if (COMMIT.test(ref.revision)) return ref.revision;
  try {
    const commit = fs.readFileSync(path.join(repoFolder(ref, env), 'refs', ref.revision), 'utf8').trim();
    return COMMIT.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** The snapshot directory of a revision if the cache has it, else undefined. */
export function cachedSnapshot(ref: HubRef, env?: Env): string | undefined {
  const commit = cachedCommit(ref, env);
  if (!commit) return undefined;
  const dir = path.join(repoFolder(ref, env), 'snapshots', commit);
  return fs.existsSync(dir) ? dir : undefined;
}

/** Every file path of a snapshot, relative to it, with '/' separators. */
export function snapshotFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk('');
  return out.sort();
}

export class HubError extends ChildtuneError {
  constructor(message: string, hint?: string) {
    super('hub', message, { hint });
  }
}

/**
 * The directory a model path or hub id names. A local directory that exists always wins; a cache folder
 * (`models--org--name`) means its `main` snapshot; `org/name[@rev]` is looked up in the cache.
 * Throws a HubError naming the fetch command when the cache lacks it.
 */
export function localModelDir(pathOrId: string, env: Env = process.env): string {
  const local = path.resolve(expandHome(pathOrId));
  if (fs.existsSync(local)) {
    const base = path.basename(local);
    if (base.startsWith('models--') && fs.existsSync(path.join(local, 'snapshots'))) {
      const ref: HubRef = {
        type: 'model',
        repo: base.slice('models--'.length).split('--').join('/'),
        revision: 'main',
      };
      const commit = (() => {
        try {
          return fs.readFileSync(path.join(local, 'refs', 'main'), 'utf8').trim();
        } catch {
          return undefined;
        }
      })();
      const snap = commit && path.join(local, 'snapshots', commit);
      if (!snap || !fs.existsSync(snap))
        throw new HubError(
          `${local} is a hub cache folder without a 'main' snapshot`,
          `Fetch it: childtune fetch ${ref.repo}`,
        );
      return snap;
    }
    return local;
  }
  const ref = parseHubId(pathOrId);
  if (!ref) return local;
  const snap = cachedSnapshot(ref, env);
  if (!snap)
    throw new HubError(
      `model ${hubIdOf(ref)} is not in the hub cache (${hubCacheDir(env)})`,
      notFetchedHint(hubIdOf(ref), env),
    );
  return snap;
}

/** How to get something that is not in the cache, given whether downloads are allowed. */
export const notFetchedHint = (id: string, env: Env = process.env) =>
  isOffline(env)
    ? `HF_HUB_OFFLINE is set: fetch it on a machine with access (childtune fetch ${id}) and copy the cache, or unset HF_HUB_OFFLINE.`
    : `Fetch it: childtune fetch ${id}`;

/** True when a model path is a hub id to be looked up in the cache (no local directory of that name exists). */
export const isHubModelId = (pathOrId: string) =>
  !fs.existsSync(path.resolve(expandHome(pathOrId))) && parseHubId(pathOrId) !== undefined;
