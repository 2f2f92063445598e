import fs from 'node:fs';
import path from 'node:path';
import { DataFileError } from '../data/formats.js';
import { loadSplit, splitFile } from '../data/load.js';
import { taskSpecOf, type Metric } from '../data/tasks.js';
import { diagnostic, pointerOf, skipped, type Diagnostic } from './diagnostics.js';
import type { Holes } from './holes.js';
import type { SourceMap } from './parse.js';
import { keysAt, schemaAt } from './schema.js';
import { closest } from './suggest.js';
import type { Dataset, Recipe } from './types.generated.js';

/**
 * Cross-field and data checks. The recipe may have failed the schema in places: each check runs only when the
 * values it reads are outside `holes` (the parts earlier phases found unknown or wrong), so the types hold for
 * what it reads. Reads (never writes) the model and data files it names.
 */
export function checkRecipe(recipe: Recipe, sources: SourceMap, holes: Holes): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (pointer: string) => {
    for (let p = pointer; ; p = p.slice(0, p.lastIndexOf('/'))) {
      const loc = sources.get(p);
      if (loc || p === '') return loc;
    }
  };
  const report = (code: Parameters<typeof diagnostic>[0], message: string, pointer: string, notes?: string[], suggestion?: string) =>
    out.push(diagnostic(code, message, pointer, { location: at(pointer), notes, suggestion }));
  const guard = holes.guard.bind(holes);
  /** The entries of a list the schema accepted as a list (none when the list itself is in a hole). */
  const entries = <T>(pointer: string, check: string, list: T[]): T[] => {
    const hole = holes.covering(pointer);
    if (!hole) return list;
    skipped(hole.cause, check);
    return [];
  };

  /** checkDataset, guarded; a hole in the subsample stops only the subsample-size check. */
  const datasetChecks = (dataset: Dataset, pointer: string, needsTrain: boolean) => {
    const dotted = pointer.slice(1).replace(/\//g, '.');
    const subsampleHole = holes.touching(`${pointer}/subsample`);
    if (subsampleHole) skipped(subsampleHole.cause, `subsample size check of ${dotted}`);
    const reads = keysAt(['dataset']).filter((k) => k !== 'subsample').map((k) => `${pointer}/${k}`);
    const check = `data file${subsampleHole ? '' : ' and subsample'} checks of ${dotted}`;
    guard(check, reads, () => checkDataset(subsampleHole ? { ...dataset, subsample: undefined } : dataset, pointer, needsTrain, report));
  };

  checkStrategy(recipe, report, guard);
  guard('model directory check of model.path', ['/model/path'], () => checkModel(recipe, report));
  datasetChecks(recipe.dataset, '/dataset', true);
  guard('metric checks of evaluation.metrics', ['/evaluation/metrics', ...labelReads('/dataset')], () => checkMetrics(recipe, report));
  entries('/transfer/domain', 'domain transfer checks', recipe.transfer?.domain).forEach((t, i) => {
    const base = pointerOf(['transfer', 'domain', i]);
    datasetChecks(t.dataset, `${base}/dataset`, false);
    guard(`label map checks of transfer.domain.${i}`, [...labelReads('/dataset'), ...labelReads(`${base}/dataset`), `${base}/label_map`], () => checkLabelMap(recipe.dataset, t.dataset, t.label_map, base, report));
  });
  entries('/transfer/task', 'task transfer checks', recipe.transfer?.task).forEach((t, i) => {
    const pointer = pointerOf(['transfer', 'task', i, 'dataset']);
    datasetChecks(t.dataset, pointer, true);
  });
  guard('sweep path checks of sweep.grid', ['/sweep/grid'], () => checkSweepPaths(Object.keys(recipe.sweep?.grid ?? {}), ['sweep', 'grid'], report));
  guard('sweep path checks of sweep.random.space', ['/sweep/random/space'], () => checkSweepPaths(Object.keys(recipe.sweep?.random?.space ?? {}), ['sweep', 'random', 'space'], report));
  return out;
}

/** What a task's label set is read from (taskSpecOf): metric and label-map checks need nothing else of a dataset. */
const labelReads = (dataset: string) => [`${dataset}/task`, `${dataset}/labels`, `${dataset}/regression`];

type Report = (code: Parameters<typeof diagnostic>[0], message: string, pointer: string, notes?: string[], suggestion?: string) => void;
type Guard = Holes['guard'];

/** The note for an option that does not apply: how to drop it, in the recipe or from the command line. */
const dropIt = (dotted: string) => `Remove ${dotted} from the recipe (or add --set ${dotted}=null), or change strategy.kind.`;

function checkStrategy({ strategy }: Recipe, report: Report, guard: Guard) {
  const kind = '/strategy/kind';
  guard('reserve_p checks of strategy', [kind, '/strategy/reserve_p'], () => {
    const child = strategy.kind !== 'vanilla';
    if (child && strategy.reserve_p === undefined) {
      report('CT0302', `strategy ${strategy.kind} needs reserve_p, the fraction of gradient elements kept`, '/strategy', ['The paper uses reserve_p between 0.1 and 0.3; try reserve_p: 0.3.']);
    }
    if (strategy.reserve_p === undefined) return;
    if (!(strategy.reserve_p > 0 && strategy.reserve_p <= 1)) report('CT0301', `reserve_p is ${strategy.reserve_p}; it must be in (0, 1]`, '/strategy/reserve_p', ['reserve_p is a fraction: 0.3 keeps 30% of the gradient.']);
    if (!child) report('CT0303', 'reserve_p applies only to child-tuning-f and child-tuning-d', '/strategy/reserve_p', [dropIt('strategy.reserve_p')]);
  });
  guard('strategy option checks', [kind, '/strategy/mask_weight_decay'], () => {
    if (strategy.fisher && strategy.kind !== 'child-tuning-d') report('CT0303', 'a fisher block applies only to child-tuning-d', '/strategy/fisher', [dropIt('strategy.fisher')]);
    if (strategy.mask_weight_decay && strategy.kind !== 'child-tuning-d') report('CT0303', 'mask_weight_decay applies only to child-tuning-d (its mask is fixed)', '/strategy/mask_weight_decay', [dropIt('strategy.mask_weight_decay')]);
    if (strategy.scope && strategy.kind !== 'child-tuning-f') {
      report('CT0303', 'strategy.scope applies only to child-tuning-f', '/strategy/scope', [...(strategy.kind === 'child-tuning-d' ? ['For child-tuning-d, set strategy.fisher.scope.'] : []), dropIt('strategy.scope')]);
    }
  });
}

function checkModel({ model }: Recipe, report: Report) {
  const missing = ['config.json', 'model.safetensors'].filter((f) => !fs.existsSync(path.join(model.path, f)));
  if (!fs.existsSync(model.path)) report('CT0309', `model directory ${model.path} does not exist`, '/model/path', ['Point model.path at a Hugging Face style directory, or create one with `childtune model init`.']);
  else if (missing.length) report('CT0309', `model directory ${model.path} has no ${missing.join(' or ')}`, '/model/path', ['A model directory holds config.json, model.safetensors and the tokenizer files.']);
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

function checkSweepPaths(keys: string[], at: string[], report: Report) {
  for (const key of keys) {
    const segments = key.split('.');
    const pointer = pointerOf([...at, key]);
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
