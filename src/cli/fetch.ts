import { fetchDataset, isBuiltinTask } from '../data/hub-layouts.js';
import { TASKS } from '../data/tasks.js';
import { parseHubId } from '../engine/hub/cache.js';
import { fetchModel } from '../engine/hub/model-files.js';
import { downloadProgress } from '../run/fetch.js';
import { UserError } from './errors.js';

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** `childtune fetch ID`: a built-in task's name fetches its data set; anything else is a model id. */
export async function fetchCommand(id: string, opts: { revision?: string }, io: Io): Promise<number> {
  const progress = downloadProgress(io);
  const log = (line: string) => io.err(line);
  if (isBuiltinTask(id)) {
    if (opts.revision)
      io.err(`note: --revision applies to models; ${id} is read from the hub's published parquet files`);
    const r = await fetchDataset(id, { progress, log });
    io.out(r.snapshot);
    return 0;
  }
  const ref = parseHubId(opts.revision ? `${id.split('@')[0]}@${opts.revision}` : id);
  if (!ref) {
    throw new UserError(
      `'${id}' is neither a model id (org/name, optionally @revision) nor a built-in task`,
      `Built-in tasks: ${Object.keys(TASKS).join(', ')}`,
      2,
    );
  }
  const r = await fetchModel(ref, { progress, log });
  io.out(r.snapshot);
  return 0;
}
