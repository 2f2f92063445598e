/** Dotted paths at which two plain values differ. */
export function diffPaths(a: unknown, b: unknown, at = ''): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
  if (isObject(a) && isObject(b))
    return [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .sort()
      .flatMap((k) => diffPaths(a[k], b[k], at ? `${at}.${k}` : k));
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at || '(root)'];
}
