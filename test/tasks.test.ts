import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TASKS } from '../src/data/tasks.js';
import { REPO } from './helpers.js';

// The data layer lists the built-in tasks itself (it may not import the recipe); the recipe schema must offer the same.
test("the built-in tasks are the recipe schema's dataset.task values", () => {
  const schema = JSON.parse(fs.readFileSync(path.join(REPO, 'schema', 'recipe.schema.json'), 'utf8'));
  assert.deepEqual([...Object.keys(TASKS), 'custom'].sort(), [...schema.$defs.dataset.properties.task.enum].sort());
  for (const [id, spec] of Object.entries(TASKS)) assert.equal(spec.id, id);
});
