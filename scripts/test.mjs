// Runs the test suite with its temporary files in one directory of its own, removed afterwards (also when the
// suite fails or is interrupted): tests create run directories and model copies (hundreds of MB per suite) that
// would otherwise pile up in the system's temporary directory. CHILDTUNE_KEEP_TEST_TMP=1 keeps them for a look.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-suite-'));
// Two test files at a time: most files train on one thread, so one at a time left CI's second core mostly idle
// (2 cores: 535 s against 822-896 s). More would only contend on such a machine and multiply the memory held.
const child = spawn(process.execPath, ['--test', '--test-concurrency=2', ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, TMPDIR: root },
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  if (process.env.CHILDTUNE_KEEP_TEST_TMP === '1') console.log(`test files kept in ${root}`);
  else fs.rmSync(root, { recursive: true, force: true });
  process.exit(code ?? (signal === 'SIGINT' ? 130 : 1));
});
