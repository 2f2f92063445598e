import { isAlias, isCollection, isPair, Parser, type CST, type Document, type Node } from 'yaml';

/** Recipes are data: bounded in size and depth, with few aliases. */
export const LIMITS = { bytes: 1 << 20, depth: 32, aliases: 64 } as const;

/**
 * The offset of the first value nested in more than LIMITS.depth collections, or undefined. Reads the
 * concrete syntax tree with an explicit stack: the YAML composer recurses once per level, so a deep
 * enough document would exhaust the call stack before any check on the composed document could run.
 */
export function tooDeepAt(text: string): number | undefined {
  const pending: [CST.Token, number][] = [];
  const documents = [...new Parser().parse(text)];
  for (const token of documents.reverse()) if (token.type === 'document' && token.value) pending.push([token.value, 0]);
  while (pending.length) {
    const [token, depth] = pending.pop()!;
    if (depth > LIMITS.depth) return token.offset;
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    for (const item of [...token.items].reverse()) {
      if (item.value) pending.push([item.value, depth + 1]);
      if (item.key) pending.push([item.key, depth + 1]);
    }
  }
  return undefined;
}

/**
 * Collection levels below a node once its aliases are expanded (0 for a scalar or an empty collection);
 * Infinity for an alias inside the collection it names. Memoised per node, so an alias bomb costs one
 * visit per node; recursion stays shallow because tooDeepAt bounded every anchored value first.
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
    let below = -1;
    for (const item of node.items) {
      const children = isPair(item) ? [item.key as Node, item.value as Node] : [item as Node];
      for (const child of children) below = Math.max(below, height(child));
    }
    heights.set(node, below + 1);
    return below + 1;
  };
  return height;
}
