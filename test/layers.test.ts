// Imports only go down the layers, and no files import each other in a cycle.
//
// Layers, top to bottom: cli, run, plan, strategies, recipe, data, engine. A file's layer is its first folder under
// src/. Read are static imports, `export ... from`, `import('./x.js')` with a literal name, `typeof import('./x.js')`
// types, and worker entries (`new URL('./x.js', import.meta.url)`). Type-only imports count like any other: a lower
// layer that names a higher layer's type still has to change when that layer does, so the type belongs lower down.
//
// The imports are read with TypeScript's own parser (already the project's compiler), which gives the line of each
// import and never mistakes a comment or a string for one; a dependency-graph tool would report module pairs only.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LAYERS = ['cli', 'run', 'plan', 'strategies', 'recipe', 'data', 'engine'] as const;

interface Import {
  from: string;
  to: string;
  line: number;
}

/** Every import of one source file that names another .ts file under src/ (paths relative to the repository). */
function importsOf(repo: string, file: string): Import[] {
  const text = fs.readFileSync(path.join(repo, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (specifier: ts.Node | undefined) => {
    if (!specifier || !ts.isStringLiteralLike(specifier) || !specifier.text.startsWith('.')) return;
    const target = path.join(path.dirname(file), specifier.text).replace(/\.js$/, '.ts');
    if (!target.startsWith(`src${path.sep}`) || !fs.existsSync(path.join(repo, target))) return;
    found.push({ from: file, to: target, line: source.getLineAndCharacterOfPosition(specifier.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    else if (ts.isNewExpression(node) && isWorkerEntry(node)) add(node.arguments![0]);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** `new URL('./x.js', import.meta.url)`: how a worker thread's entry file is named. */
function isWorkerEntry(node: ts.NewExpression): boolean {
  const base = node.arguments?.[1];
  return (
    ts.isIdentifier(node.expression) &&
    node.expression.text === 'URL' &&
    base !== undefined &&
    ts.isPropertyAccessExpression(base) &&
    ts.isMetaProperty(base.expression) &&
    base.name.text === 'url'
  );
}

function sourceFiles(repo: string): string[] {
  return (fs.readdirSync(path.join(repo, 'src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join('src', f))
    .sort();
}

const layerOf = (file: string) => file.split(path.sep)[1] as (typeof LAYERS)[number];
const where = (i: Import) => `${i.from}:${i.line} imports ${i.to}`;

/** Files outside every layer, and imports from a layer to one above it. */
function layerViolations(repo: string, imports: Import[]): string[] {
  const unplaced = sourceFiles(repo)
    .filter((f) => !LAYERS.includes(layerOf(f)))
    .map((f) => `${f} is in no layer: put it under one of src/{${LAYERS.join(',')}}/ (or add its folder to LAYERS)`);
  const upward = imports
    .filter((i) => LAYERS.indexOf(layerOf(i.to)) < LAYERS.indexOf(layerOf(i.from)))
    .map((i) => `${where(i)}: ${layerOf(i.from)} may not import ${layerOf(i.to)}, a layer above it`);
  return [...unplaced, ...upward];
}

/** Strongly connected components of more than one file (Tarjan), each with the imports that tie it. */
function cycles(imports: Import[]): string[] {
  const edges = new Map<string, string[]>();
  for (const i of imports) edges.set(i.from, [...(edges.get(i.from) ?? []), i.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (file: string) => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const next of edges.get(file) ?? []) {
      if (!index.has(next)) connect(next);
      if (onStack.has(next)) low.set(file, Math.min(low.get(file)!, low.get(next)!));
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1) components.push(component.sort());
  };
  for (const file of edges.keys()) if (!index.has(file)) connect(file);
  return components.map((c) => {
    const ties = imports.filter((i) => c.includes(i.from) && c.includes(i.to)).map((i) => `    ${where(i)}`);
    return `cycle of ${c.length} files: ${c.join(', ')}\n${ties.join('\n')}`;
  });
}

const allImports = (repo: string) => sourceFiles(repo).flatMap((f) => importsOf(repo, f));

describe('layers', () => {
  test('no import goes up a layer', () => {
    const found = layerViolations(REPO, allImports(REPO));
    assert.deepEqual(found, [], `imports must only go down (${LAYERS.join(' > ')}):\n${found.join('\n')}`);
  });

  test('no files import each other in a cycle', () => {
    const found = cycles(allImports(REPO));
    assert.deepEqual(found, [], `files that import each other:\n${found.join('\n')}`);
  });

  test('the checks name every kind of import and cycle, with file and line', () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-layers-'));
    const put = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
      fs.writeFileSync(path.join(repo, file), text);
    };
    put(
      'src/engine/pool.ts',
      "// import x from '../cli/nothing.js'\nconst w = new URL('../run/worker.js', import.meta.url);\n",
    );
    put('src/data/a.ts', "import type { R } from '../recipe/r.js';\nexport * from './b.js';\n");
    put('src/data/b.ts', "\nexport type T = typeof import('./a.js');\n");
    put('src/recipe/r.ts', "export type R = 1;\nconst m = () => import('../plan/p.js');\n");
    put('src/plan/p.ts', "import { R } from '../recipe/r.js';\n");
    put('src/run/worker.ts', '');
    put('src/misc.ts', '');
    const s = path.sep;
    assert.deepEqual(layerViolations(repo, allImports(repo)), [
      `src${s}misc.ts is in no layer: put it under one of src/{cli,run,plan,strategies,recipe,data,engine}/ (or add its folder to LAYERS)`,
      `src${s}data${s}a.ts:1 imports src${s}recipe${s}r.ts: data may not import recipe, a layer above it`,
      `src${s}engine${s}pool.ts:2 imports src${s}run${s}worker.ts: engine may not import run, a layer above it`,
      `src${s}recipe${s}r.ts:2 imports src${s}plan${s}p.ts: recipe may not import plan, a layer above it`,
    ]);
    assert.deepEqual(cycles(allImports(repo)).sort(), [
      `cycle of 2 files: src${s}data${s}a.ts, src${s}data${s}b.ts\n    src${s}data${s}a.ts:2 imports src${s}data${s}b.ts\n    src${s}data${s}b.ts:2 imports src${s}data${s}a.ts`,
      `cycle of 2 files: src${s}plan${s}p.ts, src${s}recipe${s}r.ts\n    src${s}plan${s}p.ts:1 imports src${s}recipe${s}r.ts\n    src${s}recipe${s}r.ts:2 imports src${s}plan${s}p.ts`,
    ]);
    fs.rmSync(repo, { recursive: true });
  });
});
