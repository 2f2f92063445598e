import { workerData, type MessagePort } from 'node:worker_threads';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

/** Reads one parquet file for parquet.ts and wakes the waiting thread. 64-bit integers (datasets' ClassLabel) become numbers. */
const { file, port, flag } = workerData as { file: string; port: MessagePort; flag: Int32Array };
try {
  const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors });
  for (const row of rows) for (const k of Object.keys(row)) if (typeof row[k] === 'bigint') row[k] = Number(row[k]);
  port.postMessage({ rows });
} catch (e) {
  port.postMessage({ error: (e as Error).message, missing: (e as NodeJS.ErrnoException).code === 'ENOENT' });
} finally {
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}
