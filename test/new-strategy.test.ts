import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseSafetensors } from '../src/engine/safetensors.js';
import { GLUE, REPO, tinyModel, tmpProject, write } from './helpers.js';

/**
 * A new strategy is one folder plus one registry line (issue 15). In a scratch copy of the project, the test adds
 * test/fixtures/new-strategy as src/strategies/freeze-embeddings/ and one line (with its import) to registry.ts,
 * regenerates the schema and types and builds, exactly as a strategy author would; then the CLI validates the new
 * kind (a misplaced option is reported against it) and a run with it trains everything but the embeddings.
 */
test('a strategy written as one folder plus one registry line validates, plans and trains', async () => {
  const scratch = tmpProject();
  const copy = path.join(scratch, 'childtune');
  for (const entry of ['package.json', 'tsconfig.json', 'schema', 'src', 'bin', 'dist'])
    fs.cpSync(path.join(REPO, entry), path.join(copy, entry), {
      recursive: true,
      filter: (f) => !f.includes('/dist/test'),
    });
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(copy, 'node_modules'));

  const folder = path.join(copy, 'src', 'strategies', 'freeze-embeddings');
  fs.cpSync(path.join(REPO, 'test', 'fixtures', 'new-strategy'), folder, { recursive: true });
  const registry = path.join(copy, 'src', 'strategies', 'registry.ts');
  const source = fs.readFileSync(registry, 'utf8');
  const listed = 'export const STRATEGIES: readonly StrategyDefinition[] = [\n';
  assert.ok(source.includes(listed), 'registry.ts lists the kinds in STRATEGIES');
  fs.writeFileSync(
    registry,
    "import { freezeEmbeddingsDefinition } from './freeze-embeddings/index.js';\n" +
      source.replace(listed, listed + '  freezeEmbeddingsDefinition,\n'),
  );
  execFileSync(process.execPath, ['schema/generate-types.mjs'], { cwd: copy, stdio: 'pipe' });
  execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: copy,
    stdio: 'pipe',
  });

  const project = tmpProject();
  await tinyModel(path.join(project, 'model'));
  const recipe = (strategy: string) =>
    write(
      project,
      'r.yaml',
      [
        'version: 1',
        'model: {path: ./model, max_seq_length: 32}',
        `dataset: {task: glue/rte, dir: ${GLUE}/RTE, subsample: {size: 16, seed: 0, stratified: false}}`,
        `strategy: ${strategy}`,
        'training: {epochs: 1, batch_size: 8}',
        'runtime: {threads: 2, output_dir: ./runs, cache_dir: ./cache}',
      ].join('\n') + '\n',
    );
  const childtune = (args: string[]) => {
    try {
      return {
        code: 0,
        out: execFileSync(process.execPath, [path.join(copy, 'bin', 'childtune.js'), ...args], {
          cwd: project,
          encoding: 'utf8',
          stdio: 'pipe',
        }),
      };
    } catch (e) {
      const x = e as { status: number; stdout: string; stderr: string };
      return { code: x.status, out: x.stdout + x.stderr };
    }
  };
  const allow = ['--allow-path', path.dirname(GLUE)];

  const misplaced = childtune(['validate', recipe('{kind: freeze-embeddings, reserve_p: 0.3}'), ...allow]);
  assert.equal(misplaced.code, 1, misplaced.out);
  assert.match(misplaced.out, /CT0303/);
  assert.match(misplaced.out, /reserve_p/);

  const file = recipe('{kind: freeze-embeddings}');
  const plan = childtune(['plan', file, ...allow]);
  assert.equal(plan.code, 0, plan.out);
  assert.match(plan.out, /freeze-embeddings/);
  const run = childtune(['run', file, '--quiet', ...allow]);
  assert.equal(run.code, 0, run.out);
  const runs = path.join(project, 'runs');
  const runDir = path.join(runs, fs.readdirSync(runs)[0]);
  const results = JSON.parse(fs.readFileSync(path.join(runDir, 'results.json'), 'utf8'));
  assert.equal(results.strategy, 'freeze-embeddings');
  assert.ok(results.trainable_share > 0 && results.trainable_share < 1, `trainable share ${results.trainable_share}`);
  const tensors = (dir: string) => parseSafetensors(fs.readFileSync(path.join(dir, 'model.safetensors')));
  const [before, after] = [tensors(path.join(project, 'model')), tensors(path.join(runDir, 'model'))];
  for (const name of ['bert.embeddings.word_embeddings.weight', 'bert.embeddings.LayerNorm.weight'])
    assert.deepEqual(after.get(name)!.data, before.get(name)!.data, `${name} is frozen`);
  const query = 'bert.encoder.layer.0.attention.self.query.weight';
  assert.notDeepEqual(after.get(query)!.data, before.get(query)!.data, 'the encoder trains');
});
