import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { DataFileError, type RawRow } from './formats.js';

/**
 * Rows of a parquet file, read synchronously: hyparquet only reads asynchronously, while data files are read
 * inside validation and planning, which are synchronous. A worker thread reads the file and this thread
 * blocks until it answers (Atomics.wait on a shared flag, then the message taken off the port).
 */
export function parquetRows(file: string): RawRow[] {
  const { port1, port2 } = new MessageChannel();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./parquet-worker.js', import.meta.url), {
    workerData: { file, port: port2, flag },
    transferList: [port2],
  });
  try {
    Atomics.wait(flag, 0, 0);
    const answer = receiveMessageOnPort(port1)?.message as
      { rows?: Record<string, unknown>[]; error?: string; missing?: boolean } | undefined;
    if (!answer) throw new DataFileError(file, 0, 'the parquet reader stopped without an answer', 'unreadable');
    if (answer.error !== undefined)
      throw new DataFileError(
        file,
        0,
        answer.missing ? 'file not found' : `not a readable parquet file (${answer.error})`,
        answer.missing ? 'missing' : 'unreadable',
      );
    return answer.rows!.map((cells, i) => ({ line: i + 1, cells }));
  } finally {
    port1.close();
    void worker.terminate();
  }
}
