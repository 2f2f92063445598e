// Assembles src/engine/wasm/*.wat into dist/src/engine/wasm/*.wasm (run by `npm run build` after tsc).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import wabtInit from 'wabt';

const from = new URL('../src/engine/wasm/', import.meta.url);
const to = new URL('../dist/src/engine/wasm/', import.meta.url);
const wabt = await wabtInit();
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from).filter((f) => f.endsWith('.wat'))) {
  const module = wabt.parseWat(name, readFileSync(new URL(name, from), 'utf8'), { simd: true });
  module.validate();
  writeFileSync(new URL(name.replace(/\.wat$/, '.wasm'), to), module.toBinary({}).buffer);
  module.destroy();
}
