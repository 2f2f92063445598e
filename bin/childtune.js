#!/usr/bin/env node
// The CLI runs from dist/, which `npm ci` / `npm install` build (the `prepare` script). A checkout that was never
// built gets one clear line instead of a module-resolution stack trace.
import fs from 'node:fs';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!fs.existsSync(entry)) {
  process.stderr.write(
    'error: childtune is not built (dist/ is missing)\n  hint: run `npm run build` (or `npm ci`, which builds) in the childtune directory.\n',
  );
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
