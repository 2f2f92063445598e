import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYamlValue } from 'yaml';
import { diagnostic, pointerOf, segmentsOf, type Diagnostic, type SourceLocation } from './diagnostics.js';
import { parseRecipeText, type SourceMap } from './parse.js';
import { keysAt, schemaAt } from './schema.js';
import { closest } from './suggest.js';

/**
 * Composition rules (documented in the README):
 * - `extends: PATH` names a base recipe relative to the extending file; chains are allowed, cycles are errors.
 * - Mappings merge key by key, recursively. Lists and scalars in the extending recipe replace the base's
 *   value whole (lists are never concatenated, so a sweep's seeds or a transfer list reads as written).
 *   A key set to null in the extending recipe removes the base's key.
 * - `--set a.b.c=VALUE` overrides are applied last, in order; VALUE is typed by the schema at that path.
 * - Strings may reference environment variables as ${NAME} or ${NAME:-default}; nothing else is evaluated.
 * - Relative paths are resolved against the file that wrote them.
 */
export interface ComposeOptions {
  sets?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
  /** Directories (besides the project root) that recipe paths may point into. */
  allowedRoots?: readonly string[];
}

export interface ComposedRecipe {
  data: Record<string, unknown>;
  sources: SourceMap;
  /** Every recipe file read, top recipe first. */
  files: string[];
  root: string;
}

/** Recipe fields that hold file-system paths; `*` matches any key or index. */
export const PATH_FIELDS = [
  'model.path', 'dataset.dir', 'dataset.files.*', 'runtime.output_dir', 'runtime.cache_dir', 'strategy.f_masks.replay',
  'transfer.domain.*.dataset.dir', 'transfer.domain.*.dataset.files.*', 'transfer.task.*.dataset.dir', 'transfer.task.*.dataset.files.*',
] as const;

const matchesField = (segments: readonly string[], field: string) => {
  const f = field.split('.');
  return f.length === segments.length && f.every((s, i) => s === '*' || s === segments[i]);
};
export const isPathField = (segments: readonly string[]) => PATH_FIELDS.some((f) => matchesField(segments, f));

/** The project root: the nearest ancestor holding .git or .childtune-root, else the recipe's own directory. */
export function projectRootOf(recipeFile: string): string {
  const start = path.dirname(path.resolve(recipeFile));
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, '.git')) || fs.existsSync(path.join(dir, '.childtune-root'))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

const inside = (child: string, parent: string) => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

interface Layer {
  data: Record<string, unknown>;
  sources: SourceMap;
  /** Pointers whose path value the user supplied (environment variable or --set), exempt from the root check. */
  userPaths: Set<string>;
}

export function composeRecipe(file: string, options: ComposeOptions = {}): { composed?: ComposedRecipe; diagnostics: Diagnostic[] } {
  const env = options.env ?? process.env;
  const top = path.resolve(file);
  const root = projectRootOf(top);
  const roots = [root, ...(options.allowedRoots ?? []).map((r) => path.resolve(r))];
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];

  const load = (abs: string, chain: string[], from?: SourceLocation): Layer | undefined => {
    let text: string;
    try {
      text = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      diagnostics.push(chain.length
        ? diagnostic('CT0201', `extends: cannot read '${abs}': ${reason}`, '/extends', { location: from })
        : diagnostic('CT0006', `cannot read recipe '${abs}': ${reason}`, '', { location: { file: abs, line: 1, column: 1 } }));
      return undefined;
    }
    files.push(abs);
    const parsed = parseRecipeText(text, abs);
    diagnostics.push(...parsed.diagnostics);
    if (parsed.value === undefined) return undefined;
    const layer: Layer = { data: parsed.value as Record<string, unknown>, sources: parsed.sources, userPaths: new Set() };
    interpolate(layer, env, diagnostics);
    resolvePaths(layer, path.dirname(abs));
    const ext = layer.data.extends;
    if (ext === undefined) return layer;
    const extLocation = layer.sources.get('/extends');
    if (typeof ext !== 'string' || ext === '') return layer; // the schema reports the type error
    const base = path.resolve(path.dirname(abs), ext);
    if (chain.includes(base) || base === abs) {
      diagnostics.push(diagnostic('CT0202', `extends cycle: ${[...chain, abs, base].map((f) => path.relative(root, f)).join(' -> ')}`, '/extends', { location: extLocation }));
      return layer;
    }
    if (!roots.some((r) => inside(base, r))) {
      diagnostics.push(diagnostic('CT0203', `extends '${ext}' points outside the project root ${root}`, '/extends', {
        location: extLocation, notes: ['Keep base recipes inside the project (the nearest directory with .git or .childtune-root).'],
      }));
      return layer;
    }
    const baseLayer = load(base, [...chain, abs], extLocation);
    if (!baseLayer) return layer;
    delete baseLayer.data.extends;
    return mergeLayers(baseLayer, layer);
  };

  const layer = load(top, []);
  if (!layer) return { diagnostics };
  delete layer.data.extends;
  applyOverrides(layer, options.sets ?? [], diagnostics);
  for (const [pointer, value] of pathValues(layer.data)) {
    if (layer.userPaths.has(pointer) || typeof value !== 'string') continue;
    if (!roots.some((r) => inside(value, r))) {
      diagnostics.push(diagnostic('CT0203', `path ${value} is outside the project root ${root}`, pointer, {
        location: layer.sources.get(pointer),
        notes: ['Recipes may only point inside their project. Pass an outside path yourself: an environment variable (${CHILDTUNE_DATA}/...) or --set ' + segmentsOf(pointer).join('.') + '=/absolute/path.'],
      }));
    }
  }
  return { composed: { data: layer.data, sources: layer.sources, files, root }, diagnostics };
}

function* walkStrings(value: unknown, segments: string[] = []): Generator<[string[], string, (v: string) => void]> {
  if (Array.isArray(value) || (value && typeof value === 'object')) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (typeof v === 'string') yield [[...segments, k], v, (nv) => ((value as Record<string, unknown>)[k] = nv)];
      else yield* walkStrings(v, [...segments, k]);
    }
  }
}

const pathValues = (data: unknown) =>
  [...walkStrings(data)].filter(([segs]) => isPathField(segs)).map(([segs, v]) => [pointerOf(segs), v] as const);

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

function interpolate(layer: Layer, env: Readonly<Record<string, string | undefined>>, diagnostics: Diagnostic[]) {
  for (const [segs, text, set] of walkStrings(layer.data)) {
    if (!text.includes('${')) continue;
    const pointer = pointerOf(segs);
    const leading = /^\$\{([A-Za-z_][A-Za-z0-9_]*)/.exec(text)?.[1];
    if (leading && env[leading] !== undefined && env[leading] !== '') layer.userPaths.add(pointer);
    set(text.replace(VARIABLE, (_, name: string, fallback?: string) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      layer.userPaths.add(pointer); // already reported: no second, misleading 'outside the root' error
      diagnostics.push(diagnostic('CT0205', `environment variable ${name} is not set`, pointer, {
        location: layer.sources.get(pointer), notes: [`Set it (export ${name}=...), give a default as \${${name}:-value}, or override with --set ${segs.join('.')}=...`],
      }));
      return '';
    }));
  }
}

function resolvePaths(layer: Layer, dir: string) {
  for (const [segs, value, set] of walkStrings(layer.data)) {
    if (isPathField(segs) && value !== '') set(path.resolve(dir, value));
  }
}

const isMapping = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function mergeLayers(base: Layer, over: Layer): Layer {
  const sources: SourceMap = new Map();
  const copySources = (from: SourceMap, prefix: string) => {
    for (const [p, loc] of from) if (p === prefix || p.startsWith(prefix + '/')) sources.set(p, loc);
  };
  const merge = (b: unknown, o: unknown, pointer: string): unknown => {
    if (isMapping(b) && isMapping(o)) {
      const out: Record<string, unknown> = {};
      const loc = over.sources.get(pointer) ?? base.sources.get(pointer);
      if (loc) sources.set(pointer, loc);
      for (const k of new Set([...Object.keys(b), ...Object.keys(o)])) {
        const child = pointer + pointerOf([k]);
        if (!(k in o)) {
          out[k] = b[k];
          copySources(base.sources, child);
        } else if (o[k] === null) {
          continue;
        } else if (k in b) {
          out[k] = merge(b[k], o[k], child);
        } else {
          out[k] = o[k];
          copySources(over.sources, child);
        }
      }
      return out;
    }
    copySources(over.sources, pointer);
    return o;
  };
  const data = merge(base.data, over.data, '') as Record<string, unknown>;
  const userPaths = new Set([...base.userPaths, ...over.userPaths]);
  return { data, sources, userPaths };
}

function applyOverrides(layer: Layer, sets: readonly string[], diagnostics: Diagnostic[]) {
  sets.forEach((assignment, index) => {
    const location: SourceLocation = { file: '--set', line: 1, column: index + 1 };
    const eq = assignment.indexOf('=');
    if (eq <= 0) {
      diagnostics.push(diagnostic('CT0204', `--set '${assignment}' is not of the form dotted.path=value`, '', { location, notes: ['Example: --set training.optimizer.lr=3e-5'] }));
      return;
    }
    const segs = assignment.slice(0, eq).split('.');
    const raw = assignment.slice(eq + 1);
    const node = schemaAt(segs);
    const pointer = pointerOf(segs);
    if (!node) {
      const known = segs.findIndex((_, i) => !schemaAt(segs.slice(0, i + 1)));
      const parent = segs.slice(0, known);
      const suggestion = closest(segs[known], keysAt(parent));
      diagnostics.push(diagnostic('CT0204', `--set ${segs.join('.')}: the recipe has no key '${segs[known]}'${parent.length ? ` in '${parent.join('.')}'` : ''}`, pointer, {
        location, suggestion: suggestion ? [...parent, suggestion].join('.') : undefined,
      }));
      return;
    }
    let value: unknown;
    try {
      value = typedValue(raw, node.type);
    } catch (e) {
      diagnostics.push(diagnostic('CT0204', `--set ${segs.join('.')}: ${(e as Error).message}`, pointer, { location }));
      return;
    }
    // Numeric segments index into lists that exist (transfer.task.0.dataset...); anything else creates mappings.
    let target: Record<string, unknown> | unknown[] = layer.data;
    for (const [i, s] of segs.slice(0, -1).entries()) {
      if (Array.isArray(target)) {
        const k = /^\d+$/.test(s) ? Number(s) : NaN;
        if (!(k < target.length)) {
          diagnostics.push(diagnostic('CT0204', `--set ${segs.join('.')}: ${segs.slice(0, i).join('.')} has ${target.length} entries; there is no entry ${s}`, pointer, { location }));
          return;
        }
        if (!isMapping(target[k])) target[k] = {};
        target = target[k] as Record<string, unknown>;
      } else {
        if (!isMapping(target[s]) && !Array.isArray(target[s])) target[s] = {};
        target = target[s] as Record<string, unknown> | unknown[];
      }
    }
    const parent = target as Record<string, unknown>;
    parent[segs[segs.length - 1]] = value;
    for (const p of [...layer.sources.keys()]) if (p === pointer || p.startsWith(pointer + '/')) layer.sources.delete(p);
    layer.sources.set(pointer, location);
    if (isPathField(segs) && typeof value === 'string') {
      parent[segs[segs.length - 1]] = path.resolve(value);
      layer.userPaths.add(pointer);
    }
  });
}

/** Types a command-line value by the schema: strings stay strings; everything else is read as YAML. */
function typedValue(raw: string, type: string | string[] | undefined): unknown {
  const types = type === undefined ? [] : Array.isArray(type) ? type : [type];
  if (types.length === 1 && types[0] === 'string') return raw;
  let value: unknown;
  try {
    value = parseYamlValue(raw, { customTags: [] });
  } catch {
    throw new Error(`cannot read '${raw}' as a value`);
  }
  if (types.includes('string') && typeof value !== 'string' && !types.some((t) => t === typeof value || (t === 'integer' && Number.isInteger(value)))) return raw;
  return value;
}
