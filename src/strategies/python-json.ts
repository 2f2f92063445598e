/** A number Python holds as a float: written with a fraction (4.0), as json.dump writes a float. */
export class PyFloat {
  constructor(readonly value: number) {}
}
export const pyFloat = (value: number) => new PyFloat(value);

const pyFloatText = (x: number) => (Number.isInteger(x) ? x.toFixed(1) : String(x));

/**
 * JSON as Python's json.dump(value, indent=2, sort_keys=True) writes it (PEFT's and AdapterHub's config files):
 * keys sorted, floats (PyFloat) with a fraction, non-ASCII escaped (ensure_ascii), no newline at the end. A loader
 * that tests isinstance(x, float) (AdapterHub's scaling) needs the fraction.
 */
export function pythonJson(value: unknown): string {
  const floats: string[] = [];
  const sorted = (v: unknown): unknown => {
    if (v instanceof PyFloat) {
      floats.push(pyFloatText(v.value));
      return `\u0000float${floats.length - 1}\u0000`;
    }
    if (Array.isArray(v)) return v.map(sorted);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return JSON.stringify(sorted(value), null, 2)
    .replace(/"\\u0000float(\d+)\\u0000"/g, (_, i: string) => floats[Number(i)])
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
