import cliProgress from 'cli-progress';
import { fetchDataset, hubTaskSpec, isBuiltinTask } from '../data/hub-layouts.js';
import { TASKS } from '../data/tasks.js';
import { cachedSnapshot, hubIdOf, isHubModelId, isOffline, parseHubId } from '../engine/hub/cache.js';
import type { ProgressFactory } from '../engine/hub/download.js';
import { fetchModel } from '../engine/hub/model-files.js';
import { composeRecipe, type ComposeOptions } from '../recipe/compose.js';

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function bytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A progress bar per file on a terminal (bytes, rate, ETA); on other outputs a line per file when it ends. */
export function downloadProgress(io: Io): ProgressFactory {
  return (file, total, already) => {
    const started = performance.now();
    const rate = (done: number) => bytes(((done - already) * 1000) / Math.max(1, performance.now() - started)) + '/s';
    if (process.stderr.isTTY) {
      const bar = new cliProgress.SingleBar(
        {
          format: `${file} [{bar}] {percentage}% | {got} of {size} | {rate} | ETA {eta_formatted}`,
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(total, 1), already, { got: bytes(already), size: bytes(total), rate: '' });
      return { tick: (done) => bar.update(done, { got: bytes(done), rate: rate(done) }), end: () => bar.stop() };
    }
    let done = already;
    return {
      tick: (d) => {
        done = d;
      },
      end: () =>
        io.err(
          `downloaded ${file}: ${bytes(done)}${already ? ` (resumed at ${bytes(already)})` : ''} at ${rate(done)}`,
        ),
    };
  };
}

/**
 * What `run` needs from the hub and the cache lacks: the model named by a hub id and the built-in tasks named
 * without a dir (training, domain and task transfer). Fetched before validation, unless HF_HUB_OFFLINE is set
 * (then validation reports what is missing and how to fetch it).
 */
export async function fetchMissing(recipeFile: string, options: ComposeOptions, io: Io, quiet = false): Promise<void> {
  const { composed } = composeRecipe(recipeFile, options);
  const data = composed?.data as
    | {
        model?: { path?: unknown };
        dataset?: Dataset;
        transfer?: { domain?: { dataset?: Dataset }[]; task?: { dataset?: Dataset }[] };
      }
    | undefined;
  if (!data) return;
  const log = (line: string) => {
    if (!quiet) io.err(line);
  };
  const wanted: { what: string; fetch: () => Promise<unknown> }[] = [];
  const modelPath = data.model?.path;
  if (typeof modelPath === 'string' && isHubModelId(modelPath)) {
    const ref = parseHubId(modelPath)!;
    if (!cachedSnapshot(ref))
      wanted.push({
        what: `model ${hubIdOf(ref)}`,
        fetch: () => fetchModel(ref, { progress: downloadProgress(io), log }),
      });
  }
  const datasets = [
    data.dataset,
    ...(data.transfer?.domain ?? []).map((d) => d.dataset),
    ...(data.transfer?.task ?? []).map((t) => t.dataset),
  ];
  for (const d of datasets) {
    if (!d || typeof d.task !== 'string' || !isBuiltinTask(d.task) || d.dir || d.files) continue;
    const task = d.task;
    if (!hubTaskSpec(TASKS[task]).fromHub?.cached && !wanted.some((w) => w.what === `data set ${task}`))
      wanted.push({
        what: `data set ${task}`,
        fetch: () => fetchDataset(task, { progress: downloadProgress(io), log }),
      });
  }
  for (const w of wanted) {
    if (isOffline()) {
      log(`hub: ${w.what} is not in the cache and HF_HUB_OFFLINE is set: not downloading it`);
      continue;
    }
    log(`hub: ${w.what} is not in the cache: downloading it`);
    await w.fetch();
  }
}

interface Dataset {
  task?: unknown;
  dir?: unknown;
  files?: unknown;
}
