import type { ParamSpec } from '../engine/params.js';

export type Scope = 'all' | 'encoder';

/** Whether a mask with this scope covers the tensor ('encoder': the transformer layers only). */
export const inScope = (spec: ParamSpec, scope: Scope) => scope === 'all' || spec.group === 'encoder';
