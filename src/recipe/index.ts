import path from 'node:path';
import { checkRecipe } from './check.js';
import { composeRecipe, type ComposedRecipe, type ComposeOptions } from './compose.js';
import { hasErrors, type Diagnostic } from './diagnostics.js';
import { validateAgainstSchema } from './schema.js';
import type { Recipe } from './types.generated.js';

export interface LoadedRecipe {
  recipe?: Recipe;
  composed?: ComposedRecipe;
  diagnostics: Diagnostic[];
}

/** Parse, compose, validate and cross-check a recipe file. Collects every diagnostic; never throws on bad input. */
export function loadRecipe(file: string, options: ComposeOptions = {}): LoadedRecipe {
  const { composed, diagnostics } = composeRecipe(file, options);
  if (!composed || hasErrors(diagnostics)) return { composed, diagnostics };
  return resolveRecipe(composed, diagnostics);
}

/** Schema validation and cross-field checks over already composed data (also used for each sweep trial). */
export function resolveRecipe(composed: ComposedRecipe, prior: Diagnostic[] = []): LoadedRecipe {
  const { recipe, diagnostics } = validateAgainstSchema(composed.data, composed.sources);
  const all = [...prior, ...diagnostics];
  if (!recipe) return { composed, diagnostics: all };
  // Defaults are filled in after composition resolved the written paths, so defaulted ones are still relative:
  // like written ones, they are relative to the top recipe file, never to the working directory.
  const here = path.dirname(path.resolve(composed.files[0]));
  recipe.runtime.output_dir = path.resolve(here, recipe.runtime.output_dir);
  recipe.runtime.cache_dir = path.resolve(here, recipe.runtime.cache_dir);
  all.push(...checkRecipe(recipe, composed.sources));
  return { recipe: hasErrors(all) ? undefined : recipe, composed, diagnostics: all };
}

export type { Recipe } from './types.generated.js';
export type { Diagnostic } from './diagnostics.js';
