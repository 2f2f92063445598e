import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYamlValue } from 'yaml';
import { diagnostic, pointerOf, segmentsOf, skipped, type Diagnostic, type SourceLocation } from './diagnostics.js';
import { isWithin, type Hole } from './holes.js';
import { LIMITS } from './bounds.js';
import { parseRecipeText, tooLarge, type SourceMap } from './parse.js';
import { keysAt, schemaAt } from './schema.js';
import { closest } from './suggest.js';
import { expandHome, parseHubId } from '../engine/hub/cache.js';
import { RECIPE_VARIABLES } from './variables.js';

/**
 * Composition rules (documented in the README):
 * - `extends: PATH` names a base recipe relative to the extending file; chains are allowed, cycles are errors.
 *   A base must lie inside the project root, symbolic links followed.
 * - Mappings merge key by key, recursively. Lists and scalars in the extending recipe replace the base's
 *   value whole (lists are never concatenated, so a sweep's seeds or a transfer list reads as written).
 *   A key set to null in the extending recipe removes the base's key.
 * - `--set a.b.c=VALUE` overrides are applied last, in order; VALUE is typed by the schema at that path, and
 *   `--set a.b.c=null` removes the key.
 * - Strings may reference environment variables as ${NAME} or ${NAME:-default}; nothing else is evaluated.
 *   A value whose variable is unset is an error unless a later layer or a --set replaces it.
 * - Relative paths are resolved against the file that wrote them and must stay inside the project root;
 *   a path the user chose (written absolute, starting with a set variable, or given with --set) may point anywhere.
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
  /** Values later phases must not read: unset variables, --set values not applied, paths outside the project. */
  holes: Hole[];
  /** The error that kept a base recipe from being read: the keys it would supply are unknown. */
  missingBase?: Diagnostic;
}

/** Recipe fields that hold file-system paths; `*` matches any key or index. */
export const PATH_FIELDS = [
  'model.path',
  'dataset.dir',
  'dataset.files.*',
  'dataset.file',
  'runtime.output_dir',
  'runtime.cache_dir',
  'strategy.f_masks.replay',
  'transfer.domain.*.dataset.dir',
  'transfer.domain.*.dataset.files.*',
  'transfer.domain.*.dataset.file',
  'transfer.task.*.dataset.dir',
  'transfer.task.*.dataset.files.*',
  'transfer.task.*.dataset.file',
] as const;

/** The dataset block a data file path (`files.SPLIT` or `file`) belongs to, whose dir it is relative to. */
const datasetOfFile = (segs: readonly string[]) =>
  segs.at(-2) === 'files' ? segs.slice(0, -2) : segs.at(-1) === 'file' ? segs.slice(0, -1) : undefined;

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

/** `p` with symbolic links resolved as far as it exists; the part that does not exist yet is appended as written. */
function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(realPath(parent), path.basename(p));
  }
}

const inside = (child: string, parent: string) => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/**
 * A recipe file's text, read from a regular file only and never past the size limit (else its CT0003): /dev/zero
 * would be read until memory ran out, and opening a FIFO would wait for a writer forever.
 */
function readRecipeFile(file: string): string | Diagnostic {
  // Non-blocking: opening a FIFO then returns at once, and fstat tells what was opened.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Error(`not a regular file (${fileKind(stat)})`);
    if (stat.size > LIMITS.bytes) return tooLarge(`${stat.size} bytes`, file);
    const buffer = Buffer.alloc(LIMITS.bytes + 1);
    let length = 0;
    for (let n = 1; n > 0 && length < buffer.length; length += n)
      n = fs.readSync(fd, buffer, length, buffer.length - length, null);
    // A file that grew after the fstat is cut at the limit, never read to its end.
    if (length > LIMITS.bytes) return tooLarge(`more than ${LIMITS.bytes} bytes`, file);
    return buffer.toString('utf8', 0, length);
  } finally {
    fs.closeSync(fd);
  }
}

const fileKind = (s: fs.Stats) =>
  s.isDirectory()
    ? 'a directory'
    : s.isFIFO()
      ? 'a named pipe'
      : s.isCharacterDevice() || s.isBlockDevice()
        ? 'a device'
        : s.isSocket()
          ? 'a socket'
          : 'not a file';

interface Layer {
  data: Record<string, unknown>;
  sources: SourceMap;
  /** Pointers whose path the user chose (written absolute, from an environment variable, or --set): exempt from the root check. */
  userPaths: Set<string>;
  /** Values whose ${VAR} is unset, each with its error: reported unless a later layer or --set replaces the value. */
  unset: Hole[];
}

const EVERY_LATER_PHASE = 'every later phase (interpolation, composition, schema, paths, cross-field and data checks)';

export function composeRecipe(
  file: string,
  options: ComposeOptions = {},
): { composed?: ComposedRecipe; diagnostics: Diagnostic[]; files: string[] } {
  const env = options.env ?? process.env;
  const top = path.resolve(file);
  const root = projectRootOf(top);
  const roots = [root, ...(options.allowedRoots ?? []).map((r) => path.resolve(r))];
  const realRoots = roots.map(realPath);
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  let missingBase: Diagnostic | undefined;
  const baseMissing = (cause: Diagnostic) => {
    missingBase ??= cause;
  };

  /** `chain` holds the real paths of the files extending this one. */
  const load = (abs: string, chain: string[], from?: SourceLocation): Layer | undefined => {
    let text: string | Diagnostic;
    try {
      text = readRecipeFile(abs);
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      if (!chain.length)
        diagnostics.push(
          diagnostic('CT0006', `cannot read recipe '${abs}': ${reason}`, '', {
            location: { file: abs, line: 1, column: 1 },
          }),
        );
      else
        baseMissing(
          pushed(
            diagnostics,
            diagnostic('CT0201', `extends: cannot read '${abs}': ${reason}`, '/extends', { location: from }),
          ),
        );
      return undefined;
    }
    files.push(abs);
    const parsed = typeof text === 'string' ? parseRecipeText(text, abs) : { diagnostics: [text], value: undefined };
    diagnostics.push(...parsed.diagnostics);
    if (parsed.value === undefined) {
      if (chain.length) baseMissing(parsed.diagnostics[0]);
      else skipped(parsed.diagnostics[0], EVERY_LATER_PHASE);
      return undefined;
    }
    const layer: Layer = {
      data: parsed.value as Record<string, unknown>,
      sources: parsed.sources,
      userPaths: new Set(),
      unset: [],
    };
    interpolate(layer, env);
    resolvePaths(layer, path.dirname(abs));
    const ext = layer.data.extends;
    if (ext === undefined) return layer;
    const extLocation = layer.sources.get('/extends');
    const unsetBase = layer.unset.find((h) => h.pointer === '/extends');
    if (unsetBase) {
      layer.unset = layer.unset.filter((h) => h !== unsetBase);
      baseMissing(pushed(diagnostics, unsetBase.cause));
      return layer;
    }
    if (typeof ext !== 'string' || ext === '') return layer; // the schema reports the type error
    const base = path.resolve(path.dirname(abs), ext);
    const [realAbs, realBase] = [realPath(abs), realPath(base)];
    if (chain.includes(realBase) || realBase === realAbs) {
      const cycle = [...chain, realAbs, realBase].map((f) => path.relative(realRoots[0], f));
      diagnostics.push(
        diagnostic('CT0202', `extends cycle: ${cycle.join(' -> ')}`, '/extends', { location: extLocation }),
      );
      return layer;
    }
    if (!realRoots.some((r) => inside(realBase, r))) {
      const link = realBase !== base ? ` (through a symbolic link, to ${realBase})` : '';
      baseMissing(
        pushed(
          diagnostics,
          diagnostic('CT0203', `extends '${ext}' points outside the project root ${root}${link}`, '/extends', {
            location: extLocation,
            notes: [
              'Keep base recipes inside the project (the nearest directory with .git or .childtune-root), as real files or links that stay inside it.',
            ],
          }),
        ),
      );
      return layer;
    }
    const baseLayer = load(base, [...chain, realAbs], extLocation);
    if (!baseLayer) return layer;
    delete baseLayer.data.extends;
    return mergeLayers(baseLayer, layer);
  };

  const layer = load(top, []);
  if (!layer) return { diagnostics, files };
  delete layer.data.extends;
  const holes: Hole[] = [];
  applyOverrides(layer, options.sets ?? [], diagnostics, holes);
  for (const [pointer, value] of pathValues(layer.data)) {
    if (
      layer.userPaths.has(pointer) ||
      typeof value !== 'string' ||
      isHubModelPath(pointer, value) ||
      layer.unset.some((h) => h.pointer === pointer)
    )
      continue;
    if (!roots.some((r) => inside(value, r))) {
      const cause = pushed(
        diagnostics,
        diagnostic(
          'CT0203',
          `path ${value}, written relative to its recipe, is outside the project root ${root}`,
          pointer,
          {
            location: layer.sources.get(pointer),
            notes: [
              `A relative path must stay inside the project (the nearest directory with .git or .childtune-root). For a directory elsewhere, write its absolute path, start the value with an environment variable (\${CHILDTUNE_DATA}/...), or pass --set ${segmentsOf(pointer).join('.')}=/absolute/path or --allow-path DIR.`,
            ],
          },
        ),
      );
      holes.push({ pointer, cause });
    }
  }
  for (const hole of layer.unset) {
    diagnostics.push(hole.cause);
    holes.push(hole);
  }
  return {
    composed: { data: layer.data, sources: layer.sources, files, root, holes, missingBase },
    diagnostics,
    files,
  };
}

const pushed = (diagnostics: Diagnostic[], d: Diagnostic) => {
  diagnostics.push(d);
  return d;
};

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

function interpolate(layer: Layer, env: Readonly<Record<string, string | undefined>>) {
  for (const [segs, text, set] of walkStrings(layer.data)) {
    if (!text.includes('${')) continue;
    const pointer = pointerOf(segs);
    const leading = /^\$\{([A-Za-z_][A-Za-z0-9_]*)/.exec(text)?.[1];
    if (leading && env[leading] !== undefined && env[leading] !== '') layer.userPaths.add(pointer);
    let unset = false;
    const value = text.replace(VARIABLE, (_, name: string, fallback?: string) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      unset = true;
      layer.unset.push({
        pointer,
        cause: diagnostic('CT0205', `environment variable ${name} is not set`, pointer, {
          location: layer.sources.get(pointer),
          notes: [
            ...(RECIPE_VARIABLES[name] ? [`${name} holds ${RECIPE_VARIABLES[name]}.`] : []),
            `Set it (export ${name}=...), give a default as \${${name}:-value}, or replace the whole value with --set ${segs.join('.')}=${isPathField(segs) ? '/path/to/it' : '...'}`,
          ],
        }),
      });
      return '';
    });
    // A value with an unset variable stays as written: it is a hole that no later check reads.
    if (!unset) set(value);
  }
}

function resolvePaths(layer: Layer, dir: string) {
  for (const [segs, value, set] of walkStrings(layer.data)) {
    if (!isPathField(segs) || value === '') continue;
    if (path.isAbsolute(value)) layer.userPaths.add(pointerOf(segs)); // written absolute: the user chose the place
    const resolved = resolvePath(segs, value, dir, layer.data);
    set(resolved);
    // A file inside a dir the user supplied (an environment variable, --set) is the user's too.
    const dataset = datasetOfFile(segs);
    const dirPointer = dataset ? pointerOf([...dataset, 'dir']) : undefined;
    const datasetDir =
      dataset &&
      [...dataset, 'dir'].reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], layer.data);
    if (
      dirPointer &&
      layer.userPaths.has(dirPointer) &&
      typeof datasetDir === 'string' &&
      inside(resolved, path.resolve(dir, datasetDir))
    )
      layer.userPaths.add(pointerOf(segs));
  }
}

/**
 * A path field's value made absolute: `~` is the home directory; `model.path` may be a hub id (org/name[@rev])
 * when no such local directory exists, kept as written; dataset files are relative to the dataset's dir
 * when the same recipe file gives one.
 */
function resolvePath(segs: readonly string[], value: string, dir: string, data: Record<string, unknown>): string {
  const expanded = expandHome(value);
  if (segs.join('.') === 'model.path' && !fs.existsSync(path.resolve(dir, expanded)) && parseHubId(value)) return value;
  const fileOf = datasetOfFile(segs);
  const datasetDir =
    fileOf && [...fileOf, 'dir'].reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], data);
  return path.resolve(
    typeof datasetDir === 'string' && datasetDir !== '' ? path.resolve(dir, expandHome(datasetDir)) : dir,
    expanded,
  );
}

export const isHubModelPath = (pointer: string, value: string) =>
  pointer === '/model/path' && !path.isAbsolute(value) && parseHubId(value) !== undefined;

const isMapping = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function mergeLayers(base: Layer, over: Layer): Layer {
  const merged: Layer = { data: {}, sources: new Map(), userPaths: new Set(), unset: [] };
  /** Carries what `from` knows about the value at `prefix` (positions, chosen paths, unset variables). */
  const take = (from: Layer, prefix: string) => {
    for (const [p, loc] of from.sources) if (isWithin(p, prefix)) merged.sources.set(p, loc);
    for (const p of from.userPaths) if (isWithin(p, prefix)) merged.userPaths.add(p);
    merged.unset.push(...from.unset.filter((h) => isWithin(h.pointer, prefix)));
  };
  const merge = (b: unknown, o: unknown, pointer: string): unknown => {
    if (isMapping(b) && isMapping(o)) {
      const out: Record<string, unknown> = {};
      const loc = over.sources.get(pointer) ?? base.sources.get(pointer);
      if (loc) merged.sources.set(pointer, loc);
      for (const k of new Set([...Object.keys(b), ...Object.keys(o)])) {
        const child = pointer + pointerOf([k]);
        if (!(k in o)) {
          out[k] = b[k];
          take(base, child);
        } else if (o[k] === null) {
          continue;
        } else if (k in b) {
          out[k] = merge(b[k], o[k], child);
        } else {
          out[k] = o[k];
          take(over, child);
        }
      }
      return out;
    }
    take(over, pointer);
    return o;
  };
  merged.data = merge(base.data, over.data, '') as Record<string, unknown>;
  return merged;
}

/** Drops what the layer knows about the value at `pointer`, which a --set replaced. */
function forget(layer: Layer, pointer: string) {
  for (const p of [...layer.sources.keys()]) if (isWithin(p, pointer)) layer.sources.delete(p);
  for (const p of [...layer.userPaths]) if (isWithin(p, pointer)) layer.userPaths.delete(p);
  layer.unset = layer.unset.filter((h) => !isWithin(h.pointer, pointer));
}

function applyOverrides(layer: Layer, sets: readonly string[], diagnostics: Diagnostic[], holes: Hole[]) {
  sets.forEach((assignment, index) => {
    const location: SourceLocation = { file: '--set', line: 1, column: index + 1 };
    const eq = assignment.indexOf('=');
    if (eq <= 0) {
      diagnostics.push(
        diagnostic('CT0204', `--set '${assignment}' is not of the form dotted.path=value`, '', {
          location,
          notes: ['Example: --set training.optimizer.lr=3e-5'],
        }),
      );
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
      diagnostics.push(
        diagnostic(
          'CT0204',
          `--set ${segs.join('.')}: the recipe has no key '${segs[known]}'${parent.length ? ` in '${parent.join('.')}'` : ''}`,
          pointer,
          {
            location,
            suggestion: suggestion ? [...parent, suggestion].join('.') : undefined,
          },
        ),
      );
      return;
    }
    // The value the --set meant to replace stays in the recipe, unchecked: checking it would report a problem the user already fixed.
    const refuse = (message: string, notes?: string[]) => {
      holes.push({
        pointer,
        cause: pushed(
          diagnostics,
          diagnostic('CT0204', `--set ${segs.join('.')}: ${message}`, pointer, { location, notes }),
        ),
      });
    };
    if (raw === 'null') {
      const parent = segs
        .slice(0, -1)
        .reduce<unknown>(
          (v, s) => (isMapping(v) || Array.isArray(v) ? (v as Record<string, unknown>)[s] : undefined),
          layer.data,
        );
      if (Array.isArray(parent))
        return refuse('null cannot remove one entry of a list', [
          `Set the whole list instead: --set ${segs.slice(0, -1).join('.')}=[...]`,
        ]);
      if (isMapping(parent)) delete parent[segs[segs.length - 1]];
      forget(layer, pointer);
      return;
    }
    let value: unknown;
    try {
      value = typedValue(raw, node.type);
    } catch (e) {
      return refuse((e as Error).message);
    }
    // Numeric segments index into lists that exist (transfer.task.0.dataset...); anything else creates mappings.
    let target: Record<string, unknown> | unknown[] = layer.data;
    for (const [i, s] of segs.slice(0, -1).entries()) {
      if (Array.isArray(target)) {
        const k = /^\d+$/.test(s) ? Number(s) : NaN;
        if (!(k < target.length))
          return refuse(`${segs.slice(0, i).join('.')} has ${target.length} entries; there is no entry ${s}`);
        if (!isMapping(target[k])) target[k] = {};
        target = target[k] as Record<string, unknown>;
      } else {
        if (!isMapping(target[s]) && !Array.isArray(target[s])) target[s] = {};
        target = target[s] as Record<string, unknown> | unknown[];
      }
    }
    const parent = target as Record<string, unknown>;
    parent[segs[segs.length - 1]] = value;
    forget(layer, pointer);
    layer.sources.set(pointer, location);
    if (isPathField(segs) && typeof value === 'string') {
      parent[segs[segs.length - 1]] = resolvePath(segs, value, process.cwd(), {});
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
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new Error(`'${raw}' is beyond the range of a number (about 1.8e308)`);
  if (
    types.includes('string') &&
    typeof value !== 'string' &&
    !types.some((t) => t === typeof value || (t === 'integer' && Number.isInteger(value)))
  )
    return raw;
  return value;
}
