import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { processEnded, startTimeOf } from '../process.js';

/** Who holds a blob lock: enough to tell, on this host, whether that process still runs. */
interface Owner {
  pid: number;
  host: string;
  /** The process's start time (/proc/PID/stat): tells a reused pid from the owner. */
  start: string | null;
}

/** The holder touches its lock this often; another host's lock untouched for STALE_MS is abandoned. */
const HEARTBEAT_MS = 10_000;
const STALE_MS = 60_000;
const POLL_MS = 100;

function isDead(text: string, mtimeMs: number): boolean {
  let owner: Owner;
  try {
    owner = JSON.parse(text);
  } catch {
    // Being written (an exclusive create comes before its content), or damaged: only age tells.
    return Date.now() - mtimeMs > STALE_MS;
  }
  if (owner.host !== os.hostname()) return Date.now() - mtimeMs > STALE_MS;
  return processEnded(owner.pid, owner.start);
}

const readLock = (file: string) => {
  try {
    return { text: fs.readFileSync(file, 'utf8'), mtimeMs: fs.statSync(file).mtimeMs };
  } catch {
    return undefined; // released meanwhile
  }
};

/** Moves a dead owner's lock away, unless another waiter replaced it first (then it is put back). */
function takeOver(file: string, judged: string) {
  const aside = `${file}.stale-${crypto.randomUUID()}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return;
  }
  if (fs.readFileSync(aside, 'utf8') !== judged)
    try {
      fs.linkSync(aside, file);
    } catch {
      // a third process holds it now: it is theirs
    }
  fs.rmSync(aside, { force: true });
}

/**
 * Runs `body` holding the lock file `file`, so that processes sharing a hub cache (a sweep's trials, jobs on a
 * cluster's shared disk) download each blob once: a second one waits (`onWait` is told who it waits for, once)
 * and then finds the blob in place. huggingface_hub's locks are flock()s on files it leaves behind; Node has no
 * flock, so this lock is a file that exists only while held, holding its owner. A lock whose owner is gone
 * (on this host: no such process; on another: not touched for a minute) is taken over.
 */
export async function withFileLock<T>(file: string, onWait: (holder: string) => void, body: () => Promise<T>) {
  const mine = JSON.stringify({ pid: process.pid, host: os.hostname(), start: startTimeOf(process.pid) } as Owner);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  for (let told = false; ;) {
    try {
      fs.writeFileSync(file, mine, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const held = readLock(file);
    if (!held) continue;
    if (isDead(held.text, held.mtimeMs)) {
      takeOver(file, held.text);
      continue;
    }
    if (!told) {
      const owner = (() => {
        try {
          return JSON.parse(held.text) as Owner;
        } catch {
          return undefined;
        }
      })();
      onWait(owner ? `process ${owner.pid} on ${owner.host}` : 'another process');
      told = true;
    }
    await new Promise((ok) => setTimeout(ok, POLL_MS));
  }
  const heartbeat = setInterval(() => fs.utimes(file, new Date(), new Date(), () => {}), HEARTBEAT_MS).unref();
  try {
    return await body();
  } finally {
    clearInterval(heartbeat);
    if (readLock(file)?.text === mine) fs.rmSync(file, { force: true });
  }
}
