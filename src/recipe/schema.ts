import { createRequire } from 'node:module';
import type { ErrorObject } from 'ajv/dist/2020.js';
import { parse as parseYamlValue } from 'yaml';
import { diagnostic, dottedOf, pointerOf, segmentsOf, skipped, type Diagnostic } from './diagnostics.js';
import type { Holes } from './holes.js';
import type { SourceMap } from './parse.js';
import { closest } from './suggest.js';
import type { Recipe } from './types.generated.js';
import { validate } from './validate.generated.js';

/** ajv's standalone validator (generated at build time): fills defaults in place, leaves its errors on itself. */
const validateFn = validate as unknown as { (data: unknown): boolean; errors?: ErrorObject[] | null };

const require = createRequire(import.meta.url);
export const recipeSchema: JsonSchema = require('../../../schema/recipe.schema.json');
export const SUPPORTED_VERSIONS = [1] as const;

export interface JsonSchema {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  required?: string[];
  $defs?: Record<string, JsonSchema>;
  [k: string]: unknown;
}

/** Follows $ref within the recipe schema. */
export function deref(node: JsonSchema | undefined): JsonSchema | undefined {
  let n = node;
  while (n?.$ref) {
    const extra = { ...n };
    delete extra.$ref;
    n = { ...recipeSchema.$defs![n.$ref.replace('#/$defs/', '')], ...extra };
  }
  return n;
}

const isMapping = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A union node (x-discriminator: the strategy, one branch per kind) as the data at it selects: the branch of its
 * kind (the default kind when the mapping names none). With no data, or a kind no branch has, every branch's
 * options together, a kind's own over another's copy.
 */
function branchOf(node: JsonSchema, value: unknown): JsonSchema {
  const key = node['x-discriminator'];
  if (typeof key !== 'string' || !Array.isArray(node.allOf)) return node;
  const branches = (node.allOf as { if: JsonSchema; then: JsonSchema }[]).map((b) => ({
    tag: b.if.properties![key].const,
    schema: deref(b.then)!,
  }));
  const tag = isMapping(value) ? (value[key] ?? node.properties?.[key]?.default) : undefined;
  const chosen = branches.find((b) => b.tag === tag);
  if (chosen) return chosen.schema;
  const properties: Record<string, JsonSchema> = {};
  for (const b of branches)
    for (const [k, p] of Object.entries(b.schema.properties ?? {}))
      if (!properties[k] || properties[k]['x-owners']) properties[k] = p;
  return { ...node, properties };
}

/**
 * The schema node at a path of recipe keys, or undefined when the schema has no such path. `data` (the recipe)
 * chooses the branch of a union (the strategy's kind); without it, every branch's keys are found.
 */
export function schemaAt(segments: readonly string[], data?: unknown): JsonSchema | undefined {
  let node = deref(recipeSchema);
  let value = data;
  for (const seg of segments) {
    if (!node) return undefined;
    node = branchOf(node, value);
    if (node.properties && seg in node.properties) node = deref(node.properties[seg]);
    else if (node.prefixItems && /^\d+$/.test(seg)) node = deref(node.prefixItems[Number(seg)]);
    else if (node.items && /^\d+$/.test(seg)) node = deref(node.items);
    else if (typeof node.additionalProperties === 'object') node = deref(node.additionalProperties);
    else return undefined;
    value = isMapping(value) || Array.isArray(value) ? (value as Record<string, unknown>)[seg] : undefined;
  }
  return node && branchOf(node, value);
}

/** Keys the schema allows at a path (for did-you-mean): a strategy's own options, not those of other kinds. */
export const keysAt = (segments: readonly string[], data?: unknown) =>
  Object.entries(schemaAt(segments, data)?.properties ?? {})
    .filter(([, p]) => !p['x-owners'])
    .map(([k]) => k);

/** Kinds a misplaced option belongs to (x-owners: marked by schema/strategies.mjs), or undefined for an own option. */
export const ownersOf = (node: JsonSchema | undefined) => node?.['x-owners'] as string[] | undefined;

export interface SchemaResult {
  /** Set when the data is valid. */
  recipe?: Recipe;
  /** The data with defaults filled in, valid or not: later checks read its parts outside the holes. */
  data: Record<string, unknown>;
  diagnostics: Diagnostic[];
}

/**
 * Validates composed recipe data against the schema, fills defaults, and maps every error to a diagnostic.
 * Values in `holes` are not checked (their errors are dropped); each schema error becomes a hole for later
 * phases. With `missingBase`, keys a base recipe would have supplied are unknown, so missing keys are not errors.
 */
export function validateAgainstSchema(
  data: unknown,
  sources: SourceMap,
  holes: Holes,
  missingBase?: Diagnostic,
): SchemaResult {
  const copy = structuredClone(data) as Record<string, unknown>;
  for (const hole of holes.all) skipped(hole.cause, `schema check of ${dottedOf(hole.pointer)}`);
  if (missingBase) skipped(missingBase, 'required-key checks');
  const ok = validateFn(copy);
  if (ok) return { recipe: copy as unknown as Recipe, data: copy, diagnostics: [] };
  const errors = (validateFn.errors ?? []).filter(
    (e) => !holes.covering(errorPointer(e)) && !(missingBase && e.keyword === 'required'),
  );
  const diagnostics = toDiagnostics(errors, copy, data, sources, holes);
  return { recipe: errors.length ? undefined : (copy as unknown as Recipe), data: copy, diagnostics };
}

/** The recipe part an error is about: the missing or unknown key itself, else the value that failed. */
function errorPointer(e: ErrorObject): string {
  if (e.keyword === 'required')
    return pointerOf([...segmentsOf(e.instancePath), (e.params as { missingProperty: string }).missingProperty]);
  if (e.keyword === 'additionalProperties')
    return pointerOf([...segmentsOf(e.instancePath), (e.params as { additionalProperty: string }).additionalProperty]);
  return e.instancePath;
}

function locate(sources: SourceMap, pointer: string) {
  let p = pointer;
  for (;;) {
    const loc = sources.get(p);
    if (loc || p === '') return loc;
    p = p.slice(0, p.lastIndexOf('/'));
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${numberText(value)}`;
}

/** A value as written in a message; JSON would print a number beyond a double's range (1e309, .inf) as null. */
const numberText = (value: unknown) =>
  typeof value === 'number' && !Number.isFinite(value)
    ? `${value} (beyond the range of a number)`
    : JSON.stringify(value);

/**
 * Why a string stands where a number or boolean was expected, when it reads as one: it was quoted, or came from
 * ${VAR}, which YAML has already typed as a string before the variable's value is put in.
 */
function typedStringNote(actual: string, expected: string, dotted: string): string[] | undefined {
  let reads: unknown;
  try {
    reads = parseYamlValue(actual, { customTags: [] });
  } catch {
    return undefined;
  }
  if (!expected.split(',').some((t) => typeof reads === t || (t === 'integer' && Number.isInteger(reads))))
    return undefined;
  return [
    `The value is the text ${JSON.stringify(actual)}: quoted, or put in by a \${VAR}, which YAML reads as a string before the variable is interpolated.`,
    `Write the value itself, or pass it from the environment with --set ${dotted}=$VAR (typed by the schema).`,
  ];
}

function valueAt(data: unknown, pointer: string): unknown {
  let v: any = data;
  for (const s of segmentsOf(pointer)) v = v?.[s];
  return v;
}

/** `data` is what was validated (defaults filled in), `written` the composed recipe before defaults. */
function toDiagnostics(
  errors: ErrorObject[],
  data: unknown,
  written: unknown,
  sources: SourceMap,
  holes: Holes,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  const unknownKeyFixes = new Set<string>(); // "pointer|key" of missing keys already explained by a misspelling
  const push = (d: Diagnostic) => {
    const id = `${d.code}|${d.pointer}|${d.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push(d);
      holes.add(d.pointer, d);
    }
    return d;
  };
  for (const e of errors) {
    if (e.keyword !== 'additionalProperties') continue;
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    const parent = segmentsOf(e.instancePath);
    const pointer = pointerOf([...parent, key]);
    const suggestion = closest(key, keysAt(parent, data));
    if (suggestion) unknownKeyFixes.add(`${e.instancePath}|${suggestion}`);
    const where = parent.length ? `in '${parent.join('.')}'` : 'at the top level';
    const d = push(
      diagnostic('CT0102', `unknown key '${key}' ${where}`, pointer, {
        location: locate(sources, pointer),
        suggestion,
        notes: [`allowed keys: ${keysAt(parent, data).join(', ')}`],
      }),
    );
    // Where the key it resembles was not written, the misspelling was probably meant for it: checks of that
    // key would judge a default the user did not choose.
    if (suggestion && valueAt(written, pointerOf([...parent, suggestion])) === undefined)
      holes.add(pointerOf([...parent, suggestion]), d);
  }
  for (const e of errors) {
    const pointer = e.instancePath;
    const location = locate(sources, pointer);
    const dotted = segmentsOf(pointer).join('.') || 'recipe';
    const actual = valueAt(data, pointer);
    switch (e.keyword) {
      case 'additionalProperties':
        break;
      case 'required': {
        const key = (e.params as { missingProperty: string }).missingProperty;
        if (unknownKeyFixes.has(`${pointer}|${key}`)) break;
        const node = schemaAt([...segmentsOf(pointer), key], data);
        push(
          diagnostic('CT0103', `missing required key '${key}' in ${dotted}`, pointerOf([...segmentsOf(pointer), key]), {
            location,
            notes: node?.description ? [`${key}: ${node.description}`] : undefined,
          }),
        );
        break;
      }
      case 'const':
      case 'enum': {
        const allowed =
          e.keyword === 'const'
            ? [(e.params as { allowedValue: unknown }).allowedValue]
            : (e.params as { allowedValues: unknown[] }).allowedValues;
        if (pointer === '/version') {
          push(
            diagnostic('CT0101', `unsupported recipe version ${JSON.stringify(actual)}`, pointer, {
              location,
              notes: [
                `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
                'Write `version: 1` at the top of the recipe.',
              ],
            }),
          );
          break;
        }
        const suggestion = typeof actual === 'string' ? closest(actual, allowed.map(String)) : undefined;
        push(
          diagnostic(
            'CT0105',
            `${dotted} is ${describe(actual)}; expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`,
            pointer,
            { location, suggestion },
          ),
        );
        break;
      }
      case 'type': {
        const expected = String((e.params as { type: string }).type);
        push(
          diagnostic('CT0104', `${dotted} is ${describe(actual)}; expected ${expected.replace(',', ' or ')}`, pointer, {
            location,
            notes: typeof actual === 'string' ? typedStringNote(actual, expected, dotted) : undefined,
          }),
        );
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const { comparison, limit } = e.params as { comparison: string; limit: number };
        // The field's description says why the bound is there (a seed's 32 bits), where it has one.
        const description = schemaAt(segmentsOf(pointer), data)?.description;
        push(
          diagnostic('CT0106', `${dotted} is ${numberText(actual)}; it must be ${comparison} ${limit}`, pointer, {
            location,
            notes: description ? [description] : undefined,
          }),
        );
        break;
      }
      case 'pattern':
        if (pointer === '/name') {
          push(
            diagnostic(
              'CT0108',
              `name ${JSON.stringify(actual)} is not a file name: it must not be '.' or '..' nor contain '/', '\\' or control characters`,
              pointer,
              {
                location,
                notes: [
                  'The name becomes part of the run directory under runtime.output_dir; use letters, digits, dashes and dots.',
                ],
              },
            ),
          );
          break;
        }
        push(diagnostic('CT0107', `${dotted} ${e.message ?? 'is invalid'}`, pointer, { location }));
        break;
      case 'if':
      case 'anyOf':
      case 'oneOf':
        break;
      default:
        push(diagnostic('CT0107', `${dotted} ${e.message ?? 'is invalid'}`, pointer, { location }));
    }
  }
  return out;
}
