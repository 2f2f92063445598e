import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { readModelConfig } from '../src/engine/config.js';
import { internalShape, paramSpecs } from '../src/engine/params.js';
import { readSafetensors } from '../src/engine/safetensors.js';
import { cli } from './helpers.js';
import { outcome, smallProject, spawnCli } from './integrity-helpers.js';

/**
 * Whole runs of the adapter, prefix-tuning and prompt-tuning strategies on the smallest real project with two
 * threads: a rerun is bit-identical, a run stopped after its first checkpoint resumes to the same end, and the
 * pretrained weights they must not touch are bit-identical to the checkpoint's after training.
 */
const KINDS = {
  adapter: '{kind: adapter, placement: pfeiffer, reduction_factor: 32}',
  'prefix-tuning': '{kind: prefix-tuning, length: 3, reparameterize: true, mlp_hidden: 16}',
  'prompt-tuning': '{kind: prompt-tuning, length: 4}',
} as const;

/** One parameter each kind adds, as its checkpoint names it. */
const STRATEGY_PARAM = {
  adapter: 'adapter.layer.0.output.down.weight',
  'prefix-tuning': 'prefix.mlp.layer.1.weight',
  'prompt-tuning': 'prompt.embeddings',
} as const;

/**
 * What each kind above freezes: every checkpoint tensor but the classifier (their default head, PEFT's; BERT's
 * pooler stays frozen too; Pfeiffer adapters train no LayerNorm).
 */
const frozen = (name: string) => !/^classifier\./.test(name);

/**
 * The model's own weights after a run: its saved model.safetensors, or where the strategy saves PEFT's layout
 * (prefix and prompt tuning: no model.safetensors), the last checkpoint's weights.
 */
function trainedWeights(runDir: string, modelDir: string): Map<string, Float32Array> {
  const saved = path.join(runDir, 'model', 'model.safetensors');
  if (fs.existsSync(saved)) return new Map([...readSafetensors(saved)].map(([k, t]) => [k, t.data]));
  const at = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint.json'), 'utf8'));
  const state = readSafetensors(path.join(runDir, at.dir, 'state.safetensors'));
  // The checkpoint keeps the engine's layout (flat; dense weights [in, out]): back to the saved [out, in].
  return new Map(
    paramSpecs(readModelConfig(modelDir), 2).flatMap((spec) => {
      const t = state.get(`param/${spec.name}`);
      return t ? [[spec.name, spec.transposed ? transposed(t.data, internalShape(spec)) : t.data] as const] : [];
    }),
  );
}

/** [rows, cols] to [cols, rows]. */
function transposed(data: Float32Array, [rows, cols]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

describe('delta strategies in whole runs (two threads)', () => {
  let project: { dir: string; recipe: string };
  before(async () => {
    project = await smallProject();
  });

  const run = async (kind: keyof typeof KINDS, out: string, env: Record<string, string> = {}) => {
    const args = [
      'run',
      project.recipe,
      '--quiet',
      '--json',
      '--set',
      `strategy=${KINDS[kind]}`,
      '--set',
      'runtime.threads=2',
      '--set',
      `runtime.output_dir=${path.join(project.dir, out)}`,
    ];
    if (Object.keys(env).length) return spawnCli(args, env);
    const r = await cli(args);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out)[0].dir as string;
  };

  for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[])
    test(`${kind}: a rerun is bit-identical; the pretrained weights it freezes are unchanged`, async () => {
      const first = (await run(kind, `${kind}-a`)) as string;
      const again = (await run(kind, `${kind}-b`)) as string;
      assert.deepEqual(outcome(again), outcome(first));
      const pretrained = readSafetensors(path.join(project.dir, 'model', 'model.safetensors'));
      const trained = trainedWeights(first, path.join(project.dir, 'model'));
      let checked = 0;
      for (const [name, t] of pretrained) {
        if (!frozen(name) || !trained.has(name)) continue;
        assert.deepEqual(trained.get(name), t.data, `${name} changed`);
        checked++;
      }
      assert.ok(checked > 20, `${checked} frozen tensors compared`);
      const results = JSON.parse(fs.readFileSync(path.join(first, 'results.json'), 'utf8'));
      assert.equal(results.strategy, kind);
    });

  test('the plan refuses a max_seq_length whose positions after a prefix (or a prompt) run past the model table', async () => {
    // The tiny model has 512 positions: 510 tokens after a prefix of 3 fit, 512 do not (transformers would slice
    // its position table short); numbered from zero they fit.
    const plan = (strategy: string, length: number) =>
      cli(['plan', project.recipe, '--set', `strategy=${strategy}`, '--set', `model.max_seq_length=${length}`]);
    const refused = await plan('{kind: prefix-tuning, length: 3}', 512);
    assert.equal(refused.code, 1);
    assert.match(
      refused.out + refused.err,
      /CT0106[\s\S]*strategy prefix-tuning with model\.max_seq_length 512 reads 515 position rows; the model has 512[\s\S]*Lower model\.max_seq_length to 509 or less/,
    );
    assert.equal((await plan('{kind: prefix-tuning, length: 3}', 509)).code, 0);
    assert.equal((await plan('{kind: prefix-tuning, length: 3, positions: from-zero}', 512)).code, 0);
    const prompt = await plan('{kind: prompt-tuning, length: 4}', 512);
    assert.match(prompt.out + prompt.err, /CT0106[\s\S]*reads 516 position rows; the model has 512/);
  });

  for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[])
    test(`${kind}: killed after a checkpoint, the resumed run ends bit-identical (its parameters are in the checkpoint)`, async () => {
      const whole = (await run(kind, `${kind}-whole`)) as string;
      // Stop at successive file renames until one leaves a mid-training checkpoint and no results.
      for (let n = 6; n < 20; n++) {
        const out = path.join(project.dir, `${kind}-killed-${n}`);
        const killed = (await run(kind, `${kind}-killed-${n}`, { CHILDTUNE_FAULT_AT: `${n}:SIGKILL` })) as {
          signal: string | null;
        };
        assert.equal(killed.signal, 'SIGKILL', `rename ${n} is before the end of the run`);
        const [dir] = fs.readdirSync(out).map((d) => path.join(out, d));
        if (!fs.existsSync(path.join(dir, 'checkpoint.json'))) continue;
        const at = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
        assert.ok(at.step >= 1, 'killed after a training step');
        const state = readSafetensors(path.join(dir, at.dir, 'state.safetensors'));
        const own = STRATEGY_PARAM[kind];
        for (const group of ['param', 'adam_m', 'adam_v'])
          assert.ok(state.has(`${group}/${own}`), `the checkpoint holds ${group}/${own}`);
        const resumed = await cli(['run', '--resume', dir, '--quiet']);
        assert.equal(resumed.code, 0, resumed.err);
        assert.deepEqual(outcome(dir), outcome(whole));
        return;
      }
      assert.fail('no rename left a checkpoint');
    });
});
