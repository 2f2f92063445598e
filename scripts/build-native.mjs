// Builds the native matrix kernels (native/gemm.c) into dist/native/childtune.node, run by `npm run build`.
// It never fails the build: without a C compiler or Node's headers the engine runs its wasm kernels, and
// this script says so. dist/native/status.json records the outcome for the run log.
// `--amx-emulation <file>` builds, for the tests, the same kernels with AMX's tile instructions emulated in C
// (test/native/amx-emulation.h) into <file>, so that the amx-bf16 kernel runs on CPUs without AMX; it fails loudly.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const source = path.join(root, 'native', 'gemm.c');
const outDir = path.join(root, 'dist', 'native');
const target = path.join(outDir, 'childtune.node');
const compiler = process.env.CC || 'cc';
const emulation = process.argv[2] === '--amx-emulation' ? process.argv[3] : undefined;
if (process.argv[2] === '--amx-emulation' && !emulation) {
  console.error('build-native: --amx-emulation takes the file to build, e.g. --amx-emulation /tmp/amx-emulated.node');
  process.exit(2);
}

/** Where node_api.h lives: beside this node binary (official builds, nvm, Debian's /usr), or in node-gyp's header cache. */
function nodeHeaders() {
  const home = process.env.HOME ?? '';
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    path.join(home, '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((dir) => existsSync(path.join(dir, 'node_api.h')));
}

function finish(built, why) {
  mkdirSync(outDir, { recursive: true });
  // No stale addon from an earlier build may load when this one did not build.
  if (!built) rmSync(target, { force: true });
  writeFileSync(path.join(outDir, 'status.json'), `${JSON.stringify({ built, why })}\n`);
  console.error(`build-native: ${why}`);
}

/** The compiler's arguments: -ffp-contract=off, no fused multiply-add, so results match the wasm kernel bit for bit. */
const compilerArgs = (headers, out, extra = []) => [
  '-O3',
  '-std=c11',
  '-ffp-contract=off',
  '-fPIC',
  '-shared',
  '-Wall',
  '-Wextra',
  `-I${headers}`,
  ...extra,
  source,
  '-o',
  out,
];

function buildEmulation() {
  const headers = nodeHeaders();
  if (!headers)
    throw new Error(`build-native: Node's C headers (node_api.h) were not found beside ${process.execPath}`);
  const out = path.resolve(emulation);
  mkdirSync(path.dirname(out), { recursive: true });
  const header = path.join(root, 'test', 'native', 'amx-emulation.h');
  execFileSync(compiler, compilerArgs(headers, out, ['-include', header]), { stdio: 'inherit' });
}

function build() {
  if (process.env.CHILDTUNE_NATIVE === '0')
    return finish(false, 'skipped (CHILDTUNE_NATIVE=0); the engine runs its wasm kernels');
  if (process.arch !== 'x64')
    return finish(
      false,
      `no native kernels for ${process.arch} (they are written for x86-64 AVX2/AVX-512); the engine runs its wasm kernels`,
    );
  if (existsSync(target) && statSync(target).mtimeMs > statSync(source).mtimeMs)
    return finish(true, `up to date: ${path.relative(root, target)}`);
  const headers = nodeHeaders();
  if (!headers)
    return finish(
      false,
      `Node's C headers (node_api.h) were not found beside ${process.execPath}; the engine runs its wasm kernels`,
    );
  mkdirSync(outDir, { recursive: true });
  try {
    execFileSync(compiler, compilerArgs(headers, target), { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const detail =
      e.code === 'ENOENT'
        ? `no C compiler (${compiler}) on PATH`
        : `${compiler} failed: ${String(e.stderr ?? e.message)
            .trim()
            .split('\n')
            .slice(0, 3)
            .join(' | ')}`;
    return finish(false, `${detail}; the engine runs its wasm kernels`);
  }
  finish(true, `built ${path.relative(root, target)} with ${compiler}`);
}

if (emulation) buildEmulation();
else build();
