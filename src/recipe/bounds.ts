import { CST, isAlias, isCollection, isPair, Lexer, Parser, type Document, type Node } from 'yaml';

/** Recipes are data: bounded in size, in depth (collections at most 32 keys or indices below the top) and in aliases. */
export const LIMITS = { bytes: 1 << 20, depth: 32, aliases: 64 } as const;

/**
 * The offset of the first collection more than LIMITS.depth levels below the top one, or undefined. Watches the
 * concrete syntax parser's stack of open collections token by token and stops at the first one too deep:
 * the YAML composer recurses once per level, so a deep enough document would exhaust the call stack before
 * any check on the composed document could run, and building the whole syntax tree of one would take seconds.
 */
export function tooDeepAt(text: string): number | undefined {
  const parser = new Parser();
  for (const lexeme of new Lexer().lex(text)) {
    for (const _ of parser.next(lexeme)); // finished top-level tokens: only the open ones on the stack matter
    const open = parser.stack.filter(CST.isCollection);
    if (open.length > LIMITS.depth + 1) return open[open.length - 1].offset;
  }
  return undefined;
}

/**
 * Collection levels in a node once its aliases are expanded (0 for a scalar, 1 for a collection of scalars
 * or an empty one); Infinity for an alias inside the collection it names. Memoised per node, so an alias
 * bomb costs one visit per node; recursion stays shallow because tooDeepAt bounded every anchored value first.
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
