import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseModelConfig, type ModelConfig } from '../src/engine/config.js';
import { EncoderClassifier, type Batch } from '../src/engine/model.js';
import { Rng } from '../src/engine/rng.js';
import { initialValue } from '../src/engine/checkpoint.js';
import { adamwStep, clipCoefficient, type AdamWSettings } from '../src/engine/optimizer.js';
import type { ParamSpec } from '../src/engine/params.js';
import { updateSegment } from '../src/engine/parallel/shard.js';
import type { Strategy } from '../src/strategies/strategy.js';
import { main } from '../src/cli/main.js';
import { writeCheckpoint } from '../src/run/checkpoint.js';
import type { LoopState } from '../src/run/train.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED = process.env.CHILDTUNE_SHARED ?? path.resolve(REPO, '..', 'shared');
export const GLUE = path.join(SHARED, 'data', 'glue');
export const FIXTURES = path.join(SHARED, 'fixtures');

/** A BERT configuration of the given shape with the bert-base-uncased vocabulary (as the bench builds them). */
export const bertConfig = (layers: number, hidden: number, heads: number) =>
  parseModelConfig(
    {
      model_type: 'bert',
      vocab_size: 30522,
      hidden_size: hidden,
      num_hidden_layers: layers,
      num_attention_heads: heads,
      intermediate_size: 4 * hidden,
      max_position_embeddings: 512,
      type_vocab_size: 2,
    },
    '<test>',
    'bert',
  );

/** A model of `config` with `labels` classes, every weight drawn as a fresh checkpoint would be, from `seed`. */
export function randomModel(config: ModelConfig, seed: number, labels = 2): EncoderClassifier {
  const model = new EncoderClassifier(config, labels);
  const rng = new Rng(seed);
  model.specs.forEach((s, i) => (model.values[i] = initialValue(s, rng)));
  return model;
}

/** A fresh temporary directory marked as a project root (so recipe paths inside it are allowed). */
export function tmpProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-test-'));
  fs.writeFileSync(path.join(dir, '.childtune-root'), '');
  return dir;
}

/**
 * GLUE task folders under `root`/glue: the real training files, dev files cut to their first `devRows` lines (plus a
 * header where the file has one). For tests that run many trials to a finite dev metric, where scoring a whole dev set
 * per trial would be most of their time.
 */
export function glueWithShortDev(root: string, tasks: readonly string[], devRows = 96): string {
  for (const task of tasks) {
    const to = path.join(root, 'glue', task);
    fs.mkdirSync(to, { recursive: true });
    fs.copyFileSync(path.join(GLUE, task, 'train.tsv'), path.join(to, 'train.tsv'));
    const lines = fs.readFileSync(path.join(GLUE, task, 'dev.tsv'), 'utf8').split('\n');
    fs.writeFileSync(path.join(to, 'dev.tsv'), lines.slice(0, devRows + 1).join('\n') + '\n');
  }
  return root;
}

export function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** A micro encoder for gradient checks and memory tests. */
export function microModel(
  opts: {
    family?: 'bert' | 'roberta' | 'electra';
    labels?: number;
    seed?: number;
    std?: number;
    embedding?: number;
  } = {},
): EncoderClassifier {
  const config: ModelConfig = parseModelConfig(
    {
      model_type: opts.family ?? 'bert',
      vocab_size: 40,
      hidden_size: 8,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 16,
      max_position_embeddings: 16,
      type_vocab_size: 2,
      embedding_size: opts.embedding ?? 8,
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
    },
    '<test>',
  );
  const model = new EncoderClassifier(config, opts.labels ?? 3);
  const rng = new Rng(opts.seed ?? 1);
  model.specs.forEach((s, i) => {
    model.values[i] = initialValue(s, rng, opts.std ?? 0.3);
    if (s.init !== 'normal') for (let j = 0; j < model.values[i].length; j++) model.values[i][j] += rng.normal() * 0.1;
  });
  return model;
}

/**
 * A checkpoint of `model` after `loop.step` steps of a run on 2 threads (its weights stand in for the moments too),
 * as a run writes one; the loop state's other fields as at the start unless given. Returns the checkpoint's folder.
 */
export function writeMicroCheckpoint(
  dir: string,
  model: EncoderClassifier,
  loop: Partial<LoopState> & { step: number },
) {
  return writeCheckpoint(dir, model.specs, {
    meta: {
      version: 1,
      recipeHash: 'h',
      backend: 'wasm',
      threads: 2,
      adamStep: loop.step,
      loop: {
        epoch: 0,
        batch: loop.step,
        skipped: 0,
        lastLoss: 0.5,
        window: { lossSum: 0, lossCount: 0, examples: 0 },
        epochs: [],
        best: { epoch: -1, score: -Infinity },
        metricsLines: loop.step,
        kept: [],
        ...loop,
      },
    },
    values: model.values,
    m: model.values,
    v: model.values,
  });
}

/** A batch of two short sequences for microModel (one padded, one with two segments) and 3-class labels. */
export const microBatch = (): Batch => ({
  batch: 2,
  seq: 5,
  inputIds: Int32Array.from([2, 7, 9, 3, 0, 2, 5, 3, 8, 3]),
  tokenTypeIds: Int32Array.from([0, 0, 0, 0, 0, 0, 0, 0, 1, 1]),
  attentionMask: Float32Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1, 1]),
  labels: Float32Array.from([2, 0]),
});

/** `count` batches of four random unpadded 5-token sequences for microModel, with random 3-class labels. */
export const randomMicroBatches = (seed: number, count: number): Batch[] => {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => ({
    batch: 4,
    seq: 5,
    inputIds: Int32Array.from({ length: 20 }, () => 1 + rng.int(39)),
    tokenTypeIds: new Int32Array(20),
    attentionMask: new Float32Array(20).fill(1),
    labels: Float32Array.from({ length: 4 }, () => rng.int(3)),
  }));
};

/** Runs the CLI in this process, capturing its output. */
export async function cli(argv: string[]) {
  let out = '',
    err = '';
  const code = await main(argv, { out: (t) => (out += t + '\n'), err: (t) => (err += t + '\n') });
  return { code, out, err };
}

/** `childtune model init` of a random BERT-tiny with the fixture's vocabulary, into dir. */
export async function tinyModel(dir: string) {
  const r = await cli([
    'model',
    'init',
    '--size',
    'tiny',
    '--out',
    dir,
    '--vocab',
    path.join(FIXTURES, 'bert-tiny-random', 'vocab.txt'),
  ]);
  if (r.code !== 0) throw new Error(r.err);
  return dir;
}

/** A fresh project with a tiny model at ./model and a recipe r.yaml over it: `body` follows the model line. */
export async function tinyModelRecipe(body: string): Promise<string> {
  const dir = tmpProject();
  await tinyModel(path.join(dir, 'model'));
  return write(dir, 'r.yaml', `version: 1\nmodel: {path: ./model, max_seq_length: 32}\n${body}`);
}

/** torch's clip_grad_norm_ over whole gradients on one thread, for tests that drive a model step by step. */
export function clipGlobalNorm(grads: Float32Array[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  const coef = clipCoefficient(norm, maxNorm);
  if (coef < 1) for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef;
  return norm;
}

/** AdamW over whole tensors on one thread: the data-parallel update (updateSegment) with one segment per tensor. */
export class AdamW {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;

  constructor(
    private readonly specs: readonly ParamSpec[],
    private readonly s: AdamWSettings,
  ) {
    this.m = specs.map((p) => new Float32Array(p.shape.reduce((a, b) => a * b, 1)));
    this.v = this.m.map((m) => new Float32Array(m.length));
  }

  update(values: Float32Array[], grads: Float32Array[], lr: number, strategy?: Strategy) {
    this.step++;
    const adam = adamwStep(this.s, this.step, lr);
    const state = { values, grads: [grads], m: this.m, v: this.v };
    this.specs.forEach((spec, index) => {
      const n = grads[index].length;
      const kept = updateSegment(
        state,
        { index, lo: 0, hi: n },
        strategy?.spec ?? { kind: 'vanilla' },
        this.step,
        1,
        adam,
        spec.decay,
      );
      strategy?.record(index, kept, n);
    });
  }
}

/**
 * Starts `childtune run` on `recipe` in a child process and sends it `signal` once its checkpoint pointer has reached
 * `killAt` optimizer steps (SIGKILL: it dies there; SIGTERM: it stops at its next safe point, writing a checkpoint);
 * returns the run directory, left as the signal left it.
 */
export async function runUntilKilled(
  recipe: string,
  killAt: number,
  args: readonly string[] = [],
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<string> {
  const child = spawn(process.execPath, [path.join(REPO, 'bin', 'childtune.js'), 'run', recipe, '--quiet', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const runDir = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /run directory: (.*)/.exec(stderr);
      if (!m) return;
      const pointer = path.join(m[1].trim(), 'checkpoint.json');
      if (fs.existsSync(pointer) && JSON.parse(fs.readFileSync(pointer, 'utf8')).step >= killAt) {
        clearInterval(timer);
        child.kill(signal);
        resolve(m[1].trim());
      }
    }, 5);
    child.on('exit', () => {
      clearInterval(timer);
      reject(new Error(`the run ended before step ${killAt} was checkpointed:\n${stderr}`));
    });
  });
  await new Promise((r) => child.once('exit', r).once('close', r));
  assert.ok(!fs.existsSync(path.join(runDir, 'results.json')), 'killed before the end');
  return runDir;
}

/** runUntilKilled, then the run directory resumed to its end; returns the directory. */
export async function killAndResume(recipe: string, killAt: number, args: readonly string[] = []): Promise<string> {
  const runDir = await runUntilKilled(recipe, killAt, args);
  const again = await cli(['run', '--resume', runDir]);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /resume: continuing from step \d+/);
  return runDir;
}
