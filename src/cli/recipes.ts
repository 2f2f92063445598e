import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { closest } from '../recipe/suggest.js';
import { UserError } from './errors.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const RECIPES = path.join(REPO_ROOT, 'recipes');

export interface BundledRecipe {
  /** What `childtune run NAME` accepts: the path under recipes/ without .yaml (quickstart, paper/glue/rte). */
  name: string;
  file: string;
  /** The recipe's first comment line. */
  summary: string;
}

/** The recipes shipped in recipes/, by name, in name order. */
export function bundledRecipes(): BundledRecipe[] {
  const out: BundledRecipe[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.yaml')) {
        const first = fs
          .readFileSync(file, 'utf8')
          .split('\n')
          .find((l) => l.startsWith('#'));
        out.push({
          name: path
            .relative(RECIPES, file)
            .replace(/\.yaml$/, '')
            .split(path.sep)
            .join('/'),
          file,
          summary: first?.replace(/^#\s*/, '') ?? '',
        });
      }
    }
  };
  walk(RECIPES);
  return out;
}

/**
 * What a recipe argument names: an existing file, else a bundled recipe by name (from any directory).
 * A bundled recipe run by name writes its runs and cache under the working directory, like a recipe of the
 * user's own project, never into the installed package: the returned overrides say so and come before the user's.
 */
export function resolveRecipeArgument(arg: string): { file: string; overrides: string[] } {
  if (fs.existsSync(arg)) return { file: arg, overrides: [] };
  const all = bundledRecipes();
  const hit = all.find((r) => r.name === arg.replace(/\.ya?ml$/, '').replace(/^recipes\//, ''));
  if (hit)
    return {
      file: hit.file,
      overrides: [
        `runtime.output_dir=${path.resolve('runs')}`,
        `runtime.cache_dir=${path.resolve('.childtune', 'cache')}`,
      ],
    };
  // A path that merely does not exist is the loader's to report (with its diagnostic code); a bare name is ours.
  if (/\.ya?ml$/.test(arg)) return { file: arg, overrides: [] };
  const suggestion = closest(
    arg,
    all.map((r) => r.name),
  );
  throw new UserError(
    `no recipe file '${arg}' and no bundled recipe of that name`,
    `${suggestion ? `Did you mean '${suggestion}'? ` : ''}\`childtune recipes\` lists the bundled recipes; a file path must exist.`,
  );
}
