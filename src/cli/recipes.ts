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
  /** The first sentence of the recipe's leading comment, whole (it may span several comment lines). */
  summary: string;
  /** The whole leading comment, its lines joined. */
  description: string;
}

/** The leading comment block of a recipe file, its lines joined with spaces. */
function leadingComment(text: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('#'));
  if (start < 0) return '';
  const block: string[] = [];
  for (const l of lines.slice(start)) {
    if (!l.startsWith('#')) break;
    block.push(l.replace(/^#\s*/, '').trim());
  }
  return block.filter(Boolean).join(' ');
}

/**
 * The first sentence: up to a full stop or semicolon that a capital, a backquote or the end follows (so 'et al.
 * 2021' and '0.3' do not end it); a semicolon is shown as the full stop it stands for.
 */
export function firstSentence(text: string): string {
  const m = /^(.*?)([.;])(?=\s+[A-Z`]|\s*$)/.exec(text);
  return m ? `${m[1]}.` : text;
}

/** Text as lines of at most `width` columns, broken between words (a longer word has a line of its own). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return line ? [...lines, line] : lines;
}

/** `childtune recipes`: each name, then its first sentence whole, wrapped to the terminal's width under itself. */
export function recipeListing(list: BundledRecipe[], columns: number): string {
  const indent = Math.max(...list.map((r) => r.name.length)) + 2;
  const width = Math.max(40, columns - indent);
  return list.map((r) => r.name.padEnd(indent) + wrap(r.summary, width).join(`\n${' '.repeat(indent)}`)).join('\n');
}

/** The recipes shipped in recipes/, by name, in name order. */
export function bundledRecipes(): BundledRecipe[] {
  const out: BundledRecipe[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.yaml')) {
        const description = leadingComment(fs.readFileSync(file, 'utf8'));
        out.push({
          name: path
            .relative(RECIPES, file)
            .replace(/\.yaml$/, '')
            .split(path.sep)
            .join('/'),
          file,
          summary: firstSentence(description),
          description,
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
