// Assembles src/engine/wasm/*.wat into dist/src/engine/wasm/*.wasm (run by `npm run build` after tsc).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import wabtInit from 'wabt';

const from = new URL('../src/engine/wasm/', import.meta.url);
const to = new URL('../dist/src/engine/wasm/', import.meta.url);
// SIMD for the kernels; threads for the optimizer's shared memory.
const features = { simd: true, threads: true };
const wabt = await wabtInit();
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from).filter((f) => f.endsWith('.wat'))) {
  try {
    const module = wabt.parseWat(name, readFileSync(new URL(name, from), 'utf8'), features);
    module.validate(features);
    writeFileSync(new URL(name.replace(/\.wat$/, '.wasm'), to), module.toBinary({}).buffer);
    module.destroy();
  } catch (e) {
    // wabt's stack trace is a page of minified code; its message names the file, line and column.
    console.error(`build-wasm: ${e.message}`);
    process.exit(1);
  }
}
