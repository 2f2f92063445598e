import path from 'node:path';
import { checkRecipe } from './check.js';
import { composeRecipe, type ComposedRecipe, type ComposeOptions } from './compose.js';
import { hasErrors, ordered, skipped, type Diagnostic } from './diagnostics.js';
import { Holes } from './holes.js';
import { validateAgainstSchema } from './schema.js';
import type { Recipe } from './types.generated.js';

export interface LoadedRecipe {
  recipe?: Recipe;
  composed?: ComposedRecipe;
  /** Every problem of every phase, in reading order. */
  diagnostics: Diagnostic[];
}

/**
 * Parse, compose, validate and cross-check a recipe file. Every phase runs on what the earlier ones left
 * usable; a value an earlier error made unknown is skipped, and that error names the checks skipped.
 * Collects every diagnostic; never throws on bad input.
 */
export function loadRecipe(file: string, options: ComposeOptions = {}): LoadedRecipe {
  const { composed, diagnostics, files } = composeRecipe(file, options);
  if (!composed) return { diagnostics: ordered(diagnostics, files) };
  return resolveRecipe(composed, diagnostics);
}

/** Schema validation and cross-field checks over already composed data (also used for each sweep trial). */
export function resolveRecipe(composed: ComposedRecipe, prior: Diagnostic[] = []): LoadedRecipe {
  const holes = new Holes(composed.holes);
  const { recipe, data, diagnostics } = validateAgainstSchema(
    composed.data,
    composed.sources,
    holes,
    composed.missingBase,
  );
  const all = [...prior, ...diagnostics];
  // Defaults are filled in after composition resolved the written paths, so defaulted ones are still relative:
  // like written ones, they are relative to the top recipe file, never to the working directory.
  const here = path.dirname(path.resolve(composed.files[0]));
  const runtime = data.runtime as Record<string, unknown> | undefined;
  for (const key of ['output_dir', 'cache_dir']) {
    if (typeof runtime?.[key] === 'string' && !holes.covering(`/runtime/${key}`))
      runtime[key] = path.resolve(here, runtime[key] as string);
  }
  // Without a base recipe's keys, cross-field checks would judge a recipe the user did not write.
  if (composed.missingBase) skipped(composed.missingBase, 'cross-field and data checks');
  else all.push(...checkRecipe(data as unknown as Recipe, composed.sources, holes));
  const sorted = ordered(all, composed.files);
  return { recipe: recipe && !hasErrors(sorted) ? recipe : undefined, composed, diagnostics: sorted };
}

export type { Recipe } from './types.generated.js';
export type { Diagnostic } from './diagnostics.js';
