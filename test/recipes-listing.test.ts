import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bundledRecipes, firstSentence, recipeListing } from '../src/cli/recipes.js';
import { cli } from './helpers.js';

test('childtune recipes shows each description whole, wrapped under itself', async () => {
  assert.equal(
    firstSentence('Paper (Xu et al. 2021, Table 3): D at p = 0.3, over 10 seeds; `childtune report` gives the table.'),
    'Paper (Xu et al. 2021, Table 3): D at p = 0.3, over 10 seeds.',
  );
  const list = bundledRecipes();
  const cola = list.find((r) => r.name === 'paper/baselines/cola')!;
  assert.match(cola.summary, /^Paper, comparison table .* and Child-Tuning F and D, each over 10 seeds\.$/);
  const listing = recipeListing(list, 80);
  const indent = Math.max(...list.map((r) => r.name.length)) + 2;
  for (const line of listing.split('\n')) assert.ok(line.length <= 80, `fits 80 columns: ${line}`);
  // Every summary reads back whole from its lines.
  const entries = listing.split(/\n(?! )/);
  assert.equal(entries.length, list.length);
  entries.forEach((e, i) => {
    const [first, ...rest] = e.split('\n');
    assert.equal(first.slice(0, indent).trim(), list[i].name);
    assert.ok(rest.every((l) => l.startsWith(' '.repeat(indent))));
    assert.equal([first.slice(indent), ...rest.map((l) => l.slice(indent))].join(' '), list[i].summary);
  });
  const out = (await cli(['recipes'])).out;
  assert.match(out, /each over 10 seeds\./);
});
