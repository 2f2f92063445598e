#!/usr/bin/env node
// Exports what the PyTorch reference needs from a childtune run directory, through childtune's own code (build first):
// the tokenized training subsample (in subsample.json's order) and dev split, childtune's data order per epoch,
// and the initial weights (the pretrained checkpoint plus the head childtune initialised from the run's seed).
// Usage: node tools/reference/export.mjs RUN_DIR OUT_DIR
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { loadPretrained } from '../../dist/src/engine/checkpoint.js';
import { saveModel } from '../../dist/src/engine/save.js';
import { readModelConfig } from '../../dist/src/engine/config.js';
import { Rng, streamSeed } from '../../dist/src/engine/rng.js';
import { loadTokenizer } from '../../dist/src/engine/tokenizer.js';
import { numLabelsOf } from '../../dist/src/plan/compiler.js';
import { prepareSplit } from '../../dist/src/run/data.js';
import { STREAMS } from '../../dist/src/strategies/strategy.js';
import { totalSteps } from '../../dist/src/run/train.js';

const [runDir, outDir] = process.argv.slice(2);
if (!runDir || !outDir) throw new Error('usage: export.mjs RUN_DIR OUT_DIR');
const recipe = parse(fs.readFileSync(path.join(runDir, 'recipe.resolved.yaml'), 'utf8'));
const subsample = JSON.parse(fs.readFileSync(path.join(runDir, 'subsample.json'), 'utf8'));
const config = readModelConfig(recipe.model.path, recipe.model.family);
const tokenizer = loadTokenizer(recipe.model.path, { lowerCase: config.doLowerCase });
const maxLen = recipe.model.max_seq_length;
const train = prepareSplit(recipe.dataset, recipe.dataset.train_split, tokenizer, maxLen, true);
if (JSON.stringify(train.indices) !== JSON.stringify(subsample.indices))
  throw new Error("the subsample differs from the run's subsample.json");
const dev = prepareSplit(recipe.dataset, recipe.dataset.eval_split, tokenizer, maxLen, false);
const split = (s) => ({
  input_ids: s.encodings.map((e) => e.inputIds),
  token_type_ids: s.encodings.map((e) => e.tokenTypeIds),
  labels: s.labels,
});
const t = recipe.training;
const n = train.encodings.length;
const order = Array.from({ length: Math.ceil(t.epochs) }, (_, epoch) =>
  new Rng(streamSeed(t.seed, STREAMS.order, epoch)).shuffle(Array.from({ length: n }, (_, i) => i)),
);
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(
  path.join(outDir, 'data.json'),
  JSON.stringify({
    train: split(train),
    dev: split(dev),
    order,
    steps: totalSteps(n, recipe),
    pad_id: tokenizer.padId,
    recipe,
  }),
);
const { model } = loadPretrained(recipe.model.path, {
  family: recipe.model.family,
  numLabels: numLabelsOf(recipe.dataset),
  seed: t.seed,
});
saveModel(model, path.join(outDir, 'init'));
console.log(
  `${outDir}: ${n} training and ${dev.encodings.length} dev examples, ${order.length} epochs, initial weights in init/`,
);
