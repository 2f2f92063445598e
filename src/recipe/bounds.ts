import { CST, isAlias, isCollection, isPair, Lexer, Parser, type Document, type Node } from 'yaml';

/** Recipes are data: bounded in size, in depth (collections at most 32 keys or indices below the top) and in aliases. */
export const LIMITS = { bytes: 1 << 20, depth: 32, aliases: 64 } as const;

/** Thrown by boundedTokens at the first collection more than LIMITS.depth levels below the top one. */
export class TooDeep extends Error {
  constructor(readonly offset: number) {
    super(`a collection at offset ${offset} nests deeper than ${LIMITS.depth} levels`);
  }
}

/**
 * The concrete syntax tree of `text`, top-level token by token, as the yaml package's Parser builds it, but
 * stopped with TooDeep at the first collection nested too deep, found on the parser's stack of open tokens:
 * the YAML composer recurses once per level, so a deep enough document would exhaust the call stack before
 * any check on the composed document could run, and building the whole tree of one would take seconds.
 */
export function* boundedTokens(text: string, onNewLine: (offset: number) => void): Generator<CST.Token> {
  const parser = new Parser(onNewLine);
  onNewLine(0); // as Parser.parse does before the first token
  for (const lexeme of new Lexer().lex(text)) {
    yield* parser.next(lexeme);
    if (parser.stack.length <= LIMITS.depth + 1) continue; // fewer open tokens than the limit allows collections
    const open = parser.stack.filter(CST.isCollection);
    if (open.length > LIMITS.depth + 1) throw new TooDeep(open[open.length - 1].offset);
  }
  yield* parser.end();
}

/**
 * Collection levels in a node once its aliases are expanded (0 for a scalar, 1 for a collection of scalars
 * or an empty one); Infinity for an alias inside the collection it names. Memoised per node, so an alias
 * bomb costs one visit per node; recursion stays shallow because boundedTokens bounded every anchored value first.
 */
export function expandedHeight(doc: Document): (node: Node) => number {
  const heights = new Map<Node, number>();
  const height = (node: Node | null | undefined): number => {
    if (!node) return 0;
    if (isAlias(node)) return height(node.resolve(doc) as Node | undefined);
    if (!isCollection(node)) return 0;
    const known = heights.get(node);
    if (known !== undefined) return known;
    heights.set(node, Infinity); // seen again before it is finished: an alias inside its own anchor
    let below = 0;
    for (const item of node.items) {
      const children = isPair(item) ? [item.key as Node, item.value as Node] : [item as Node];
      for (const child of children) below = Math.max(below, height(child));
    }
    heights.set(node, below + 1);
    return below + 1;
  };
  return height;
}
