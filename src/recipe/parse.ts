import { Composer, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Document, type Node } from 'yaml';
import { boundedTokens, expandedHeight, LIMITS, TooDeep } from './bounds.js';
import { diagnostic, pointerOf, type Diagnostic, type SourceLocation } from './diagnostics.js';

/** Recipes are data: no tags that construct objects. */
const PLAIN_TAGS = new Set([
  'tag:yaml.org,2002:str',
  'tag:yaml.org,2002:int',
  'tag:yaml.org,2002:float',
  'tag:yaml.org,2002:bool',
  'tag:yaml.org,2002:null',
  'tag:yaml.org,2002:map',
  'tag:yaml.org,2002:seq',
]);

/** Where each JSON pointer of a parsed document came from. */
export type SourceMap = Map<string, SourceLocation>;

export interface ParsedFile {
  value: unknown;
  sources: SourceMap;
  diagnostics: Diagnostic[];
}

/** CT0003 for a recipe file of `size` (a byte count, or "more than the limit" where it was not read whole). */
export const tooLarge = (size: string, file: string) =>
  diagnostic('CT0003', `recipe is ${size}; the limit is ${LIMITS.bytes}`, '', {
    location: { file, line: 1, column: 1 },
    notes: ['Recipes describe experiments; put data in data files.'],
  });

/** Parses one YAML recipe file into plain JSON data plus a pointer-to-position map. Never throws. */
export function parseRecipeText(text: string, file: string): ParsedFile {
  const diagnostics: Diagnostic[] = [];
  const sources: SourceMap = new Map();
  const at = (line: number, column: number): SourceLocation => ({ file, line, column });
  if (Buffer.byteLength(text) > LIMITS.bytes) {
    diagnostics.push(tooLarge(`${Buffer.byteLength(text)} bytes`, file));
    return { value: undefined, sources, diagnostics };
  }
  const lines = new LineCounter();
  const locate = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return at(line, col);
  };
  // Duplicate keys are found by the walk below: the composer's own check compares every key with every other.
  const composer = new Composer({
    uniqueKeys: false,
    prettyErrors: false,
    strict: true,
    customTags: [],
    version: '1.2',
  });
  const documents: Document.Parsed[] = [];
  try {
    for (const d of composer.compose(boundedTokens(text, lines.addNewLine), true, text.length)) documents.push(d);
  } catch (e) {
    if (!(e instanceof TooDeep)) throw e;
    diagnostics.push(tooDeep(`recipe nests deeper than ${LIMITS.depth} levels`, '', locate(e.offset)));
    return { value: undefined, sources, diagnostics };
  }
  const [doc, second] = documents;
  if (second) {
    diagnostics.push(
      diagnostic('CT0001', 'a recipe is one YAML document; a second one starts here', '', {
        location: locate(second.range[0]),
        notes: ['Remove the `---` line and what follows, or move it to a file of its own.'],
      }),
    );
  }
  // After the first syntax error the parser resynchronises badly, so what follows it is mostly its echo:
  // the first is reported, the rest counted in its note.
  const syntax: { message: string; at: number }[] = [];
  for (const e of [...doc.errors, ...doc.warnings]) {
    const message = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    if (message.startsWith('Unresolved tag'))
      diagnostics.push(tagNotAllowed(message.replace(/^Unresolved tag: /, ''), '', locate(e.pos[0])));
    else syntax.push({ message, at: e.pos[0] });
  }
  if (syntax.length) {
    const [first, ...rest] = syntax;
    const location = locate(first.at);
    const line = text.split('\n')[location.line - 1] ?? '';
    const notes = ['Fix the YAML syntax at this position.'];
    if (/\{[^}]*\$\{/.test(line))
      notes.push('Inside { ... } a value that starts with ${VAR} must be quoted: {path: "${VAR}"}.');
    if (rest.length)
      notes.push(
        `${rest.length} more syntax error${rest.length > 1 ? 's' : ''} follow${rest.length > 1 ? '' : 's'} (to line ${locate(rest.at(-1)!.at).line}), most likely consequences of this one: fix it and validate again.`,
      );
    diagnostics.push(diagnostic('CT0001', first.message, '', { location, notes }));
  }
  if (diagnostics.length) return { value: undefined, sources, diagnostics };

  let aliases = 0;
  const heightOf = expandedHeight(doc);
  const walk = (node: Node | null | undefined, path: (string | number)[]): void => {
    if (!node) return;
    const pointer = pointerOf(path);
    if (node.range && !sources.has(pointer)) sources.set(pointer, locate(node.range[0]));
    if (isAlias(node)) {
      if (++aliases > LIMITS.aliases)
        diagnostics.push(
          diagnostic('CT0003', `more than ${LIMITS.aliases} YAML aliases`, pointer, { location: sources.get(pointer) }),
        );
      const height = heightOf(node);
      if (height === Infinity)
        diagnostics.push(
          tooDeep(
            `alias *${node.source} refers to a value that contains it, which would nest without end`,
            pointer,
            sources.get(pointer),
          ),
        );
      else if (path.length + height - 1 > LIMITS.depth)
        diagnostics.push(
          tooDeep(
            `alias *${node.source} nests the recipe deeper than ${LIMITS.depth} levels`,
            pointer,
            sources.get(pointer),
          ),
        );
      return;
    }
    if (node.tag && !PLAIN_TAGS.has(node.tag)) {
      diagnostics.push(tagNotAllowed(node.tag, pointer, sources.get(pointer)));
    }
    if (isMap(node)) {
      const seen = new Map<string, SourceLocation | undefined>();
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode = pair.key as Node | null;
        if (isMap(keyNode) || isSeq(keyNode)) {
          diagnostics.push(
            diagnostic('CT0001', 'a key must be a plain word or number, not a list or mapping', pointer, {
              location: keyNode.range ? locate(keyNode.range[0]) : sources.get(pointer),
              notes: ['Recipe keys name fields: write `key: value`.'],
            }),
          );
          continue;
        }
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
        const keyLocation = keyNode?.range ? locate(keyNode.range[0]) : sources.get(pointer);
        if (seen.has(key)) {
          const first = seen.get(key);
          diagnostics.push(
            diagnostic(
              'CT0001',
              `key '${key}' appears twice in this mapping${first ? ` (first on line ${first.line})` : ''}`,
              pointer,
              {
                location: keyLocation,
                notes: ['Keep one of them: YAML mappings have unique keys.'],
              },
            ),
          );
          continue;
        }
        seen.set(key, keyLocation);
        const childPath = [...path, key];
        // Key positions are more useful than value positions for unknown-key diagnostics.
        if (keyLocation && keyNode?.range) sources.set(pointerOf(childPath), keyLocation);
        walk(pair.value as Node, childPath);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item as Node, [...path, i]));
    }
  };
  walk(doc.contents as Node, []);
  if (diagnostics.length) return { value: undefined, sources, diagnostics };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: LIMITS.aliases });
  } catch (e) {
    diagnostics.push(diagnostic('CT0003', (e as Error).message, '', { location: at(1, 1) }));
    return { value: undefined, sources, diagnostics };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    diagnostics.push(
      diagnostic('CT0005', 'a recipe must be a YAML mapping (key: value lines)', '', {
        location: at(1, 1),
        notes: ['Start from `childtune init`.'],
      }),
    );
    return { value: undefined, sources, diagnostics };
  }
  return { value, sources, diagnostics };
}

const tooDeep = (message: string, pointer: string, location?: SourceLocation) =>
  diagnostic('CT0004', message, pointer, {
    location,
    notes: ['Recipes are shallow data: write the values out, or nest less.'],
  });

const tagNotAllowed = (tag: string, pointer: string, location?: SourceLocation) =>
  diagnostic('CT0002', `YAML tag '${tag}' is not allowed: recipes are plain data`, pointer, {
    location,
    notes: ['Remove the tag; write the value as a plain string, number, list or mapping.'],
  });
