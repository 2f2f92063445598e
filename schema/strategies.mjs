// Assembles the recipe's `strategy` from the strategy folders: src/strategies/<kind>/schema.json, one fragment per
// kind (the strategy object for that kind, `kind` as a const). The result is a union chosen by `kind` (if/then on
// the kind, so ajv applies each branch's defaults and reports its errors against the kind written). Each branch
// also carries the other kinds' options, marked x-owners: their values are still checked, and the recipe's
// cross-field checks report them as misplaced (CT0303), naming the kinds they belong to.
import fs from 'node:fs';
import path from 'node:path';

export function strategyFragments(dir) {
  const kinds = fs.readdirSync(dir).filter((d) => fs.existsSync(path.join(dir, d, 'schema.json')));
  const fragments = kinds.map((kind) => {
    const schema = JSON.parse(fs.readFileSync(path.join(dir, kind, 'schema.json'), 'utf8'));
    if (schema.properties?.kind?.const !== kind)
      throw new Error(`${kind}/schema.json: properties.kind must be {"const": "${kind}"}`);
    // Child-Tuning inside this kind's trainable set (src/strategies/compose.ts): every kind takes it unless its
    // fragment says "x-child-tuning": false (vanilla, and Child-Tuning's own kinds).
    if (schema['x-child-tuning'] !== false)
      schema.properties.child_tuning ??= {
        $ref: '#/$defs/child_tuning',
        examples: [{ kind: 'child-tuning-d', reserve_p: 0.3 }],
      };
    return { kind, schema };
  });
  const defaults = fragments.filter((f) => f.schema['x-default']);
  if (defaults.length !== 1)
    throw new Error(
      `exactly one strategy fragment must be x-default (the kind a recipe gets without one); found ${defaults.length}`,
    );
  // The default kind first, then the others by name.
  return fragments.sort(
    (a, b) => (b.schema['x-default'] ? 1 : 0) - (a.schema['x-default'] ? 1 : 0) || a.kind.localeCompare(b.kind),
  );
}

/** `schema` with $defs.strategy (and one $defs.strategy-<kind> per fragment) assembled from the fragments. */
export function assembleStrategies(schema, dir) {
  const fragments = strategyFragments(dir);
  const owners = new Map();
  for (const { kind, schema: f } of fragments) {
    for (const [key, node] of Object.entries(f.properties)) {
      if (key === 'kind') continue;
      if (!owners.has(key)) owners.set(key, { kinds: [], node });
      owners.get(key).kinds.push(kind);
    }
  }
  const out = structuredClone(schema);
  for (const key of Object.keys(out.$defs)) if (key.startsWith('strategy-')) delete out.$defs[key];
  const defaultKind = fragments[0].kind;
  for (const { kind, schema: f } of fragments) {
    const { 'x-default': _, 'x-child-tuning': _c, ...rest } = f;
    const foreign = Object.fromEntries(
      [...owners]
        .filter(([key]) => !(key in f.properties))
        .map(([key, { kinds, node }]) => {
          const { default: _d, ...checked } = node;
          return [key, { ...checked, 'x-owners': kinds }];
        }),
    );
    out.$defs[`strategy-${kind}`] = {
      ...rest,
      additionalProperties: false,
      properties: { ...f.properties, ...foreign },
    };
  }
  out.$defs.strategy = {
    description:
      'How the training changes the gradient or the model: one branch per kind (src/strategies/<kind>/schema.json), chosen by kind.',
    type: 'object',
    'x-discriminator': 'kind',
    properties: { kind: { enum: fragments.map((f) => f.kind), default: defaultKind } },
    allOf: fragments.map(({ kind }) => ({
      if:
        kind === defaultKind
          ? { properties: { kind: { const: kind } } }
          : { required: ['kind'], properties: { kind: { const: kind } } },
      then: { $ref: `#/$defs/strategy-${kind}` },
    })),
  };
  return out;
}

/** The schema as json-schema-to-typescript should read it: the strategy a union of its branches, others' options absent. */
export function typingSchema(schema) {
  const out = structuredClone(schema);
  const branches = out.$defs.strategy.allOf.map((b) => b.then.$ref);
  for (const ref of branches) {
    const branch = out.$defs[ref.replace('#/$defs/', '')];
    branch.required = [...new Set(['kind', ...(branch.required ?? [])])];
    for (const [key, node] of Object.entries(branch.properties))
      if (node['x-owners']) branch.properties[key] = { tsType: 'undefined' };
  }
  out.$defs.strategy = { description: out.$defs.strategy.description, oneOf: branches.map(($ref) => ({ $ref })) };
  return out;
}
