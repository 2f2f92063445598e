// Runs the test suite with its temporary files in one directory of its own, removed afterwards (also when the
// suite fails or is interrupted): tests create run directories and model copies (hundreds of MB per suite) that
// would otherwise pile up in the system's temporary directory. CHILDTUNE_KEEP_TEST_TMP=1 keeps them for a look.
// Takes test files, folders of them and --test-name-pattern=REGEX.
import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';

// The files that take longest on CI's 2 cores (the webgpu tests on SwiftShader, the fresh-clone quickstart, fault
// injection, the bundled recipes: 60-180 s each) start first, so the suite does not end on one of them running
// beside an idle core. `node --test` sorts its files by name, which started them near the end: five CI runs in that
// order kept the two cores 83-87% busy (suite 621-741 s), one in this order 90% (633 s).
const FIRST = ['webgpu', 'quickstart', 'faults', 'bundled-recipes'];

const args = process.argv.slice(2);
const PATTERN = '--test-name-pattern=';
const option = args.find((a) => a.startsWith('-') && !a.startsWith(PATTERN));
if (option) {
  console.error(`scripts/test.mjs: unknown option ${option}; it takes test files, folders of them and ${PATTERN}REGEX`);
  process.exit(2);
}
const patterns = args.filter((a) => a.startsWith(PATTERN)).map((a) => a.slice(PATTERN.length));
const given = args.filter((a) => !a.startsWith('-'));
const files = (given.length ? given : ['dist/test']).flatMap((a) =>
  fs.statSync(a).isDirectory()
    ? fs
        .readdirSync(a)
        .filter((f) => f.endsWith('.test.js'))
        .map((f) => path.join(a, f))
    : [a],
);
const rank = (file) => {
  const i = FIRST.indexOf(path.basename(file, '.test.js'));
  return i < 0 ? FIRST.length : i;
};
files.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-suite-'));
process.env.TMPDIR = root;
// runtime.kernels: auto's measurement (src/engine/native.ts) is kept for the suite, not in the user's ~/.cache.
process.env.CHILDTUNE_KERNELS_CACHE ??= root;
const abort = new AbortController();
// The runner listens on the signal once per test file: more than Node's default of 10, which is no leak.
setMaxListeners(files.length + 10, abort.signal);
let interrupted;
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    interrupted = signal;
    abort.abort();
  });
let failed = false;
// Two test files at a time: most files train on one thread, so one at a time left CI's second core mostly idle
// (2 cores: 535 s against 822-896 s). More would only contend on such a machine and multiply the memory held.
const events = run({
  files,
  concurrency: 2,
  signal: abort.signal,
  ...(patterns.length && { testNamePatterns: patterns }),
});
events.on('test:fail', (e) => e.todo || (failed = true));
const report = events.compose(process.stdout.isTTY ? new spec() : tap);
report.pipe(process.stdout);
await finished(report);
if (process.env.CHILDTUNE_KEEP_TEST_TMP === '1') console.log(`test files kept in ${root}`);
else fs.rmSync(root, { recursive: true, force: true });
process.exitCode = interrupted ? (interrupted === 'SIGINT' ? 130 : 143) : failed ? 1 : 0;
