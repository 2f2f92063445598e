import fs from 'node:fs';
import path from 'node:path';
import { DataFileError } from '../data/formats.js';
import { loadSplit, splitFile } from '../data/load.js';
import { taskSpecOf, type Metric } from '../data/tasks.js';
import { FETCH_HINT, findWeights } from '../engine/model-files.js';
import { ModelError, readModelConfig } from '../engine/config.js';
import { readTokenizerConfig } from '../engine/tokenizer-config.js';
import { TokenizerError } from '../engine/tokenizer.js';
import { diagnostic, pointerOf, type Diagnostic } from './diagnostics.js';
import type { SourceMap } from './parse.js';
import { keysAt, schemaAt } from './schema.js';
import { closest } from './suggest.js';
import type { Dataset, Recipe } from './types.generated.js';

/** Cross-field checks on a schema-valid recipe. Reads (never writes) the model and data files it names. */
export function checkRecipe(recipe: Recipe, sources: SourceMap): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (pointer: string) => {
    for (let p = pointer; ; p = p.slice(0, p.lastIndexOf('/'))) {
      const loc = sources.get(p);
      if (loc || p === '') return loc;
    }
  };
  const report = (code: Parameters<typeof diagnostic>[0], message: string, pointer: string, notes?: string[], suggestion?: string) =>
    out.push(diagnostic(code, message, pointer, { location: at(pointer), notes, suggestion }));

  checkStrategy(recipe, report);
  checkModel(recipe, report);
  checkDataset(recipe.dataset, '/dataset', true, report);
  checkMetrics(recipe, report);
  recipe.transfer.domain.forEach((t, i) => {
    const base = pointerOf(['transfer', 'domain', i]);
    checkDataset(t.dataset, `${base}/dataset`, false, report);
    checkLabelMap(recipe.dataset, t.dataset, t.label_map, base, report);
  });
  recipe.transfer.task.forEach((t, i) => checkDataset(t.dataset, pointerOf(['transfer', 'task', i, 'dataset']), true, report));
  checkSweep(recipe, report);
  return out;
}

type Report = (code: Parameters<typeof diagnostic>[0], message: string, pointer: string, notes?: string[], suggestion?: string) => void;

function checkStrategy({ strategy }: Recipe, report: Report) {
  const child = strategy.kind !== 'vanilla';
  if (child && strategy.reserve_p === undefined) {
    report('CT0302', `strategy ${strategy.kind} needs reserve_p, the fraction of gradient elements kept`, '/strategy', ['The paper uses reserve_p between 0.1 and 0.3; try reserve_p: 0.3.']);
  }
  if (strategy.reserve_p !== undefined) {
    if (!child) report('CT0303', 'reserve_p applies only to child-tuning-f and child-tuning-d', '/strategy/reserve_p', ['Remove reserve_p, or set strategy.kind.']);
    else if (!(strategy.reserve_p > 0 && strategy.reserve_p <= 1)) report('CT0301', `reserve_p is ${strategy.reserve_p}; it must be in (0, 1]`, '/strategy/reserve_p', ['reserve_p is a fraction: 0.3 keeps 30% of the gradient.']);
  }
  if (strategy.fisher && strategy.kind !== 'child-tuning-d') report('CT0303', 'a fisher block applies only to child-tuning-d', '/strategy/fisher', ['Remove the fisher block, or set strategy.kind: child-tuning-d.']);
  if (strategy.mask_weight_decay && strategy.kind !== 'child-tuning-d') report('CT0303', 'mask_weight_decay applies only to child-tuning-d (its mask is fixed)', '/strategy/mask_weight_decay');
  if (strategy.f_masks && strategy.kind !== 'child-tuning-f') report('CT0303', 'f_masks applies only to child-tuning-f (the masks it draws each step)', '/strategy/f_masks');
  if (strategy.scope && strategy.kind !== 'child-tuning-f') {
    report('CT0303', 'strategy.scope applies only to child-tuning-f', '/strategy/scope', strategy.kind === 'child-tuning-d' ? ['For child-tuning-d, set strategy.fisher.scope.'] : undefined);
  }
}

function checkModel({ model }: Recipe, report: Report) {
  if (!fs.existsSync(model.path)) {
    report('CT0309', `model directory ${model.path} does not exist`, '/model/path', [FETCH_HINT, 'Or create a random model with `childtune model init`.']);
    return;
  }
  if (!fs.existsSync(path.join(model.path, 'config.json'))) report('CT0309', `model directory ${model.path} has no config.json`, '/model/path', ['A model directory holds config.json, the weights and the tokenizer files, as Hugging Face saves them.']);
  try {
    findWeights(model.path);
  } catch (e) {
    if (!(e instanceof ModelError)) throw e;
    report('CT0309', e.message, '/model/path', e.hint ? [e.hint] : undefined);
  }
  checkSequenceLength(model, report);
}

/** max_seq_length within what the model has positions for (config.json) and what its tokenizer allows (tokenizer_config.json). */
function checkSequenceLength(model: Recipe['model'], report: Report) {
  let limit: { tokens: number; why: string } | undefined;
  const consider = (tokens: number | undefined, why: string) => {
    if (tokens !== undefined && tokens < (limit?.tokens ?? Infinity)) limit = { tokens, why };
  };
  try {
    const config = readModelConfig(model.path, model.family);
    // RoBERTa numbers positions from padding_idx + 1, so two of its position embeddings are never used.
    const positions = config.family === 'roberta' ? config.maxPositions - config.padTokenId - 1 : config.maxPositions;
    consider(positions, `config.json has ${positions} positions`);
    const tokenizerMax = readTokenizerConfig(model.path).modelMaxLength;
    consider(tokenizerMax, `tokenizer_config.json says model_max_length ${tokenizerMax}`);
  } catch (e) {
    if (e instanceof TokenizerError) report('CT0309', e.message, '/model/path', e.hint ? [e.hint] : undefined);
    else if (!(e instanceof ModelError)) throw e; // config.json's problems are reported by the plan, which reads it
    return;
  }
  if (limit && model.max_seq_length > limit.tokens) {
    report('CT0106', `model.max_seq_length is ${model.max_seq_length} but the model takes at most ${limit.tokens} tokens (${limit.why})`, '/model/max_seq_length', [`Set max_seq_length: ${limit.tokens} or less.`]);
  }
}

function checkDataset(dataset: Dataset, pointer: string, needsTrain: boolean, report: Report) {
  const spec = taskSpecOf(dataset);
  if (dataset.task === 'custom') {
    const lacking = [
      !dataset.format && 'format',
      !dataset.text_fields && 'text_fields',
      !dataset.label_field && 'label_field',
      !dataset.labels && !dataset.regression && 'labels (or regression: true)',
    ].filter(Boolean);
    if (lacking.length) report('CT0307', `a custom dataset needs ${lacking.join(', ')}`, pointer, ['Example: {task: custom, format: tsv, files: {train: t.tsv, dev: d.tsv}, text_fields: [sentence], label_field: label, labels: [neg, pos]}']);
  } else {
    for (const key of ['format', 'text_fields', 'label_field', 'labels', 'regression'] as const) {
      if (dataset[key] !== undefined && !(key === 'regression' && dataset[key] === false)) {
        report('CT0303', `dataset.${key} applies only to task: custom (${dataset.task} has a fixed format)`, `${pointer}/${key}`);
      }
    }
  }
  const splits = [...(needsTrain ? [dataset.train_split] : []), dataset.eval_split];
  for (const split of splits) {
    if (!spec.files[split]) {
      report('CT0307', `no file for split '${split}'`, pointer, [`Declare it: files: {${split}: path/to/file}`]);
      continue;
    }
    if (!dataset.dir && !path.isAbsolute(spec.files[split])) {
      report('CT0307', `the dataset needs dir (the directory holding ${spec.files[split]}) or an absolute path under files.${split}`, pointer);
      continue;
    }
    const file = splitFile(spec, dataset.dir, split);
    if (!fs.existsSync(file)) report('CT0308', `data file ${file} (split '${split}') does not exist`, dataset.files?.[split] ? `${pointer}/files/${split}` : `${pointer}/dir`);
  }
  const sub = dataset.subsample;
  if (sub && needsTrain && spec.files[dataset.train_split] && (dataset.dir || path.isAbsolute(spec.files[dataset.train_split]))) {
    const file = splitFile(spec, dataset.dir, dataset.train_split);
    if (fs.existsSync(file)) {
      try {
        const n = loadSplit(spec, dataset.dir, dataset.train_split, dataset.on_bad_row).examples.length;
        if (sub.size > n) report('CT0304', `subsample size ${sub.size} is larger than the '${dataset.train_split}' split (${n} examples)`, `${pointer}/subsample/size`, [`Use a size of at most ${n}.`]);
      } catch (e) {
        if (!(e instanceof DataFileError)) throw e;
        report('CT0308', e.message, `${pointer}/dir`, ["Fix the row, or set on_bad_row: skip to count and skip malformed rows."]);
      }
    }
  }
}

function checkLabelMap(source: Dataset, target: Dataset, labelMap: Record<string, string> | undefined, pointer: string, report: Report) {
  const from = taskSpecOf(source).labels;
  const to = taskSpecOf(target).labels;
  if (from === null || to === null) {
    if (labelMap) report('CT0305', 'a label map needs classification tasks on both sides', `${pointer}/label_map`);
    return;
  }
  if (!labelMap) {
    const same = from.length === to.length && from.every((l, i) => l === to[i]);
    if (!same) report('CT0305', `the source labels (${from.join(', ')}) differ from the target's (${to.join(', ')}); a label_map is needed`, pointer, [`Map every source label to a target label, e.g. label_map: {${from.map((l) => `${l}: ${to[0]}`).join(', ')}}`]);
    return;
  }
  const missing = from.filter((l) => !(l in labelMap));
  if (missing.length) report('CT0305', `label_map does not cover the source labels ${missing.join(', ')}`, `${pointer}/label_map`, [`Source labels: ${from.join(', ')}`]);
  for (const [k, v] of Object.entries(labelMap)) {
    if (!from.includes(k)) report('CT0305', `label_map key '${k}' is not a source label`, pointerOf([...pointer.slice(1).split('/'), 'label_map', k]), undefined, closest(k, from));
    if (!to.includes(v)) report('CT0305', `label_map value '${v}' is not a target label (${to.join(', ')})`, pointerOf([...pointer.slice(1).split('/'), 'label_map', k]), undefined, closest(v, to));
  }
}

function checkMetrics(recipe: Recipe, report: Report) {
  const spec = taskSpecOf(recipe.dataset);
  const metrics = recipe.evaluation.metrics as Metric[] | undefined;
  if (!metrics) return;
  metrics.forEach((m, i) => {
    const regressionMetric = m === 'pearson' || m === 'spearman';
    const binaryOnly = m === 'f1' || m === 'mcc';
    const isRegression = spec.labels === null;
    if (regressionMetric !== isRegression || (binaryOnly && (spec.labels?.length ?? 0) !== 2)) {
      report('CT0310', `metric '${m}' does not apply to ${recipe.dataset.task} (${isRegression ? 'regression' : `${spec.labels!.length}-way classification`})`, `/evaluation/metrics/${i}`, [`This task's metrics: ${spec.metrics.join(', ')}`]);
    }
  });
}

function checkSweep(recipe: Recipe, report: Report) {
  for (const key of [...Object.keys(recipe.sweep?.grid ?? {}), ...Object.keys(recipe.sweep?.random?.space ?? {})]) {
    const segments = key.split('.');
    const inGrid = key in (recipe.sweep?.grid ?? {});
    const pointer = pointerOf(['sweep', inGrid ? 'grid' : 'random', ...(inGrid ? [] : ['space']), key]);
    if (segments[0] === 'sweep' || segments[0] === 'version' || segments[0] === 'extends') {
      report('CT0306', `sweep path '${key}' cannot be swept`, pointer);
      continue;
    }
    if (!schemaAt(segments)) {
      const bad = segments.findIndex((_, i) => !schemaAt(segments.slice(0, i + 1)));
      const suggestion = closest(segments[bad], keysAt(segments.slice(0, bad)));
      report('CT0306', `sweep path '${key}' does not exist in the recipe schema`, pointer, undefined, suggestion ? [...segments.slice(0, bad), suggestion].join('.') : undefined);
    }
  }
}
