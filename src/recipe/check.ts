import fs from 'node:fs';
import path from 'node:path';
import { DataFileError } from '../data/formats.js';
import { loadSplit, splitFile, type LoadedSplit } from '../data/load.js';
import { sharesSumToOne } from '../data/split-ratio.js';
import { taskSpecOf, type Metric, type TaskSpec } from '../data/tasks.js';
import { ModelError, readModelConfig } from '../engine/config.js';
import { hubCacheDir, HubError, localModelDir, notFetchedHint } from '../engine/hub/cache.js';
import { FETCH_HINT, findWeights, refuseSavedApart } from '../engine/model-files.js';
import { chooseKernels } from '../engine/native.js';
import { readTokenizerConfig } from '../engine/tokenizer-config.js';
import { TokenizerError } from '../engine/tokenizer.js';
import { diagnostic, pointerOf, skipped, type Diagnostic } from './diagnostics.js';
import type { Holes } from './holes.js';
import type { SourceMap } from './parse.js';
import { deref, keysAt, ownersOf, recipeSchema, schemaAt } from './schema.js';
import { closest } from './suggest.js';
import { perStrategyFactor, sweptKinds } from './sweep-kinds.js';
import type { Report } from './report.js';
import { checkTrainingControls } from './training-checks.js';
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
  const report: Report = (code, message, pointer, notes, suggestion, severity) =>
    out.push(
      diagnostic(code, message, pointer, {
        location: at(pointer),
        notes,
        suggestion,
        ...(severity ? { severity } : {}),
      }),
    );
  const guard = holes.guard.bind(holes);
  /** The entries of a list the schema accepted as a list (none when the list itself is in a hole). */
  const entries = <T>(pointer: string, check: string, list: T[]): T[] => {
    const hole = holes.covering(pointer);
    if (!hole) return list;
    skipped(hole.cause, check);
    return [];
  };

  /** checkDataset, guarded; a hole in the subsample stops only the subsample-size check. */
  const datasetChecks = (dataset: Dataset, pointer: string, needsTrain: boolean, alsoSplits: string[] = []) => {
    const dotted = pointer.slice(1).replace(/\//g, '.');
    const subsampleHole = holes.touching(`${pointer}/subsample`);
    if (subsampleHole) skipped(subsampleHole.cause, `subsample size check of ${dotted}`);
    const reads = keysAt(['dataset'])
      .filter((k) => k !== 'subsample')
      .map((k) => `${pointer}/${k}`);
    const check = `data file${subsampleHole ? '' : ' and subsample'} checks of ${dotted}`;
    guard(check, reads, () =>
      checkDataset(
        subsampleHole ? { ...dataset, subsample: undefined } : dataset,
        pointer,
        needsTrain,
        alsoSplits,
        report,
      ),
    );
  };

  checkStrategy(recipe, report, guard);
  guard('kernel checks of runtime.kernels', ['/runtime/kernels', '/runtime/backend', '/training/precision'], () =>
    checkKernels(recipe, report),
  );
  guard('model directory check of model.path', ['/model/path'], () => checkModel(recipe, report));
  const splitsHole = holes.touching('/evaluation/splits');
  if (splitsHole) skipped(splitsHole.cause, 'data file checks of evaluation.splits');
  datasetChecks(recipe.dataset, '/dataset', true, splitsHole ? [] : (recipe.evaluation?.splits ?? []));
  checkTrainingControls(recipe, sources, report, guard);
  guard('metric checks of evaluation.metrics', ['/evaluation/metrics', ...labelReads('/dataset')], () =>
    checkMetrics(recipe, report),
  );
  entries('/transfer/domain', 'domain transfer checks', recipe.transfer?.domain).forEach((t, i) => {
    const base = pointerOf(['transfer', 'domain', i]);
    datasetChecks(t.dataset, `${base}/dataset`, false);
    guard(
      `label map checks of transfer.domain.${i}`,
      [...labelReads('/dataset'), ...labelReads(`${base}/dataset`), `${base}/label_map`],
      () => checkLabelMap(recipe.dataset, t.dataset, t.label_map, base, report),
    );
  });
  entries('/transfer/task', 'task transfer checks', recipe.transfer?.task).forEach((t, i) => {
    const pointer = pointerOf(['transfer', 'task', i, 'dataset']);
    datasetChecks(t.dataset, pointer, true);
  });
  guard('sweep path checks of sweep.grid', ['/sweep/grid'], () =>
    checkSweepPaths(Object.keys(recipe.sweep?.grid ?? {}), ['sweep', 'grid'], report),
  );
  guard('sweep path checks of sweep.random.space', ['/sweep/random/space'], () =>
    checkSweepPaths(Object.keys(recipe.sweep?.random?.space ?? {}), ['sweep', 'random', 'space'], report),
  );
  guard('per-strategy checks of sweep.per_strategy', ['/sweep/per_strategy', '/sweep/grid', '/strategy/kind'], () =>
    checkPerStrategy(recipe, report),
  );
  guard(
    'trial count check of sweep',
    ['/sweep/grid', '/sweep/per_strategy', '/sweep/seeds', '/sweep/random/trials'],
    () => checkTrialCount(recipe.sweep, report),
  );
  return out;
}

/**
 * The matrix arithmetic asked for must exist here: bf16 on the CPU's native bf16 kernels only (no other backend, and
 * never emulated), fma on the native FMA kernels. What this machine lacks is an error, not a silent fallback.
 */
function checkKernels({ runtime, training }: Recipe, report: Report) {
  const cpu = runtime.backend === 'auto' || runtime.backend === 'wasm';
  if (training.precision === 'bf16' && !cpu) {
    report(
      'CT0340',
      `training.precision: bf16 runs on the CPU's native kernels, not on runtime.backend ${runtime.backend}`,
      '/training/precision',
      ['Set runtime.backend: wasm (or auto), or training.precision: fp32.'],
    );
    return;
  }
  if (!cpu || (runtime.kernels !== 'fma' && training.precision !== 'bf16')) return;
  const choice = chooseKernels(runtime.kernels, training.precision);
  if ('refused' in choice)
    report('CT0340', choice.refused, training.precision === 'bf16' ? '/training/precision' : '/runtime/kernels', [
      choice.hint,
    ]);
}

/** The most trials a sweep may expand to: each is a run directory and a line of the lock file, planned up front. */
export const MAX_TRIALS = 10_000;

/** How many trials a sweep expands to (grid points, times random samples per point, times seeds), without expanding it. */
export const trialCount = (sweep: Recipe['sweep']) =>
  Object.values(sweep?.grid ?? {}).reduce((n, values) => n * values.length, 1) *
  perStrategyFactor(sweep) *
  (sweep?.random?.trials ?? 1) *
  (sweep?.seeds?.length ?? 1);

function checkTrialCount(sweep: Recipe['sweep'], report: Report) {
  const n = trialCount(sweep);
  if (n <= MAX_TRIALS) return;
  const factors = [
    ...Object.entries(sweep?.grid ?? {}).map(([key, values]) => `${values.length} values of ${key}`),
    ...(perStrategyFactor(sweep) > 1 ? [`up to ${perStrategyFactor(sweep)} per-strategy settings`] : []),
    ...(sweep?.random ? [`${sweep.random.trials} random trials`] : []),
    ...(sweep?.seeds ? [`${sweep.seeds.length} seeds`] : []),
  ];
  report(
    'CT0311',
    `the sweep expands to ${n.toLocaleString('en-US')} trials; the limit is ${MAX_TRIALS.toLocaleString('en-US')}`,
    '/sweep',
    [
      `It multiplies ${factors.join(' x ')}.`,
      'Sweep fewer values at once (split the grid into several sweeps), or use sweep.random to sample the space.',
    ],
  );
}

const warnSkipped = (report: Report, message: string, pointer: string) =>
  report('CT0322', message, pointer, undefined, undefined, 'warning');
/** What a task's label set is read from (taskSpecOf): metric and label-map checks need nothing else of a dataset. */
const labelReads = (dataset: string) => [`${dataset}/task`, `${dataset}/labels`, `${dataset}/regression`];

type Guard = Holes['guard'];

/** The note for an option that does not apply: how to drop it, in the recipe or from the command line. */
const dropIt = (dotted: string) =>
  `Remove ${dotted} from the recipe (or add --set ${dotted}=null), or change strategy.kind.`;

/**
 * The strategy's options against its kind, from the schema's union (schema/strategies.mjs): an option of another
 * kind is misplaced (CT0303); a kind that has reserve_p needs it, as a fraction.
 */
function checkStrategy(recipe: Recipe, report: Report, guard: Guard) {
  const strategy = recipe.strategy as Record<string, unknown> & { kind: string; reserve_p?: number };
  const kind = '/strategy/kind';
  const branch = () => schemaAt(['strategy'], recipe)!;
  const misplaced = (key: string) => {
    const instead = (branch()['x-instead'] as Record<string, string> | undefined)?.[key];
    report(
      'CT0303',
      `${key} applies only to ${ownersOf(branch().properties![key])!.join(' and ')}`,
      `/strategy/${key}`,
      [...(instead ? [`For ${strategy.kind}, set ${instead}.`] : []), dropIt(`strategy.${key}`)],
    );
  };
  guard('reserve_p checks of strategy', [kind, '/strategy/reserve_p'], () => {
    const needs = !!branch().properties?.reserve_p && !ownersOf(branch().properties!.reserve_p);
    if (needs && strategy.reserve_p === undefined) {
      report(
        'CT0302',
        `strategy ${strategy.kind} needs reserve_p, the fraction of gradient elements kept`,
        '/strategy',
        ['The paper uses reserve_p between 0.1 and 0.3; try reserve_p: 0.3.'],
      );
    }
    if (strategy.reserve_p === undefined) return;
    if (!(strategy.reserve_p > 0 && strategy.reserve_p <= 1))
      report('CT0301', `reserve_p is ${strategy.reserve_p}; it must be in (0, 1]`, '/strategy/reserve_p', [
        'reserve_p is a fraction: 0.3 keeps 30% of the gradient.',
      ]);
    if (!needs) misplaced('reserve_p');
  });
  const others = Object.keys(strategy ?? {}).filter(
    (k) => k !== 'reserve_p' && strategy[k] !== undefined && ownersOf(schemaAt(['strategy', k], recipe)),
  );
  // Only whether an option is written matters, not its value (which the schema still checks against its owner's).
  guard('strategy option checks', [kind], () => others.forEach(misplaced));
}

function checkModel({ model }: Recipe, report: Report) {
  let dir: string;
  try {
    dir = localModelDir(model.path);
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
    report('CT0309', e.message, '/model/path', e.hint ? [e.hint] : undefined);
    return;
  }
  if (!fs.existsSync(dir)) {
    report('CT0309', `model directory ${dir} does not exist`, '/model/path', [
      FETCH_HINT,
      'Or create a random model with `childtune model init`.',
    ]);
    return;
  }
  const hasConfig = fs.existsSync(path.join(dir, 'config.json'));
  if (!hasConfig)
    report('CT0309', `model directory ${dir} has no config.json`, '/model/path', [
      'A model directory holds config.json, the weights and the tokenizer files, as Hugging Face saves them.',
    ]);
  try {
    // A model saved with its strategy apart says so before it says it lacks weights (PEFT's layout has none).
    refuseSavedApart(dir);
    findWeights(dir);
  } catch (e) {
    if (!(e instanceof ModelError)) throw e;
    report('CT0309', e.message, '/model/path', e.hint ? [e.hint] : undefined);
  }
  if (hasConfig) checkSequenceLength(dir, model, report);
}

/**
 * config.json's values, read as the plan reads them (a size that is not a count, or a layer count no estimate could
 * judge, is refused here as there), and max_seq_length within what the model has positions for (config.json) and
 * what its tokenizer allows (tokenizer_config.json).
 */
function checkSequenceLength(dir: string, model: Recipe['model'], report: Report) {
  let limit: { tokens: number; why: string } | undefined;
  const consider = (tokens: number | undefined, why: string) => {
    if (tokens !== undefined && tokens < (limit?.tokens ?? Infinity)) limit = { tokens, why };
  };
  try {
    const config = readModelConfig(dir, model.family);
    // RoBERTa numbers positions from padding_idx + 1, so two of its position embeddings are never used.
    const positions = config.family === 'roberta' ? config.maxPositions - config.padTokenId - 1 : config.maxPositions;
    consider(positions, `config.json has ${positions} positions`);
    const tokenizerMax = readTokenizerConfig(dir).modelMaxLength;
    consider(tokenizerMax, `tokenizer_config.json says model_max_length ${tokenizerMax}`);
  } catch (e) {
    if (!(e instanceof TokenizerError) && !(e instanceof ModelError)) throw e;
    report('CT0309', e.message, '/model/path', e.hint ? [e.hint] : undefined);
    return;
  }
  if (limit && model.max_seq_length > limit.tokens) {
    report(
      'CT0106',
      `model.max_seq_length is ${model.max_seq_length} but the model takes at most ${limit.tokens} tokens (${limit.why})`,
      '/model/max_seq_length',
      [`Set max_seq_length: ${limit.tokens} or less.`],
    );
  }
}

function checkDataset(dataset: Dataset, pointer: string, needsTrain: boolean, alsoSplits: string[], report: Report) {
  const spec = taskSpecOf(dataset);
  if (dataset.task === 'custom') {
    const lacking = [
      !dataset.text_fields && 'text_fields',
      !dataset.label_field && 'label_field',
      !dataset.labels && !dataset.regression && 'labels (or regression: true)',
    ].filter(Boolean);
    if (lacking.length)
      report('CT0307', `a custom dataset needs ${lacking.join(', ')}`, pointer, [
        'Example: {task: custom, files: {train: t.tsv, dev: d.tsv}, text_fields: [sentence], label_field: label, labels: [neg, pos]} (the format follows the extension, or set format)',
      ]);
    checkOneFile(dataset, pointer, report);
  } else {
    for (const key of ['format', 'text_fields', 'label_field', 'labels', 'regression', 'file', 'split'] as const) {
      if (dataset[key] !== undefined && !(key === 'regression' && dataset[key] === false)) {
        report(
          'CT0303',
          `dataset.${key} applies only to task: custom (${dataset.task} has a fixed format)`,
          `${pointer}/${key}`,
        );
      }
    }
  }
  if (spec.fromHub && !spec.fromHub.cached) {
    report(
      'CT0308',
      `data set ${dataset.task} is not in the hub cache (${spec.fromHub.repo} under ${hubCacheDir()})`,
      pointer,
      [notFetchedHint(dataset.task), 'Or set dataset.dir to a directory holding the files as distributed.'],
    );
    return;
  }
  // evaluation.splits: the other splits evaluated beside eval_split (test), read like it.
  const splits = [...new Set([...(needsTrain ? [dataset.train_split] : []), dataset.eval_split, ...alsoSplits])];
  for (const split of splits) {
    const name = spec.files[split] ?? (split === 'dev' ? spec.files.validation : undefined);
    if (!name) {
      if (dataset.file && dataset.split)
        report(
          'CT0307',
          `dataset.split names no split '${split}' (it names ${Object.keys(spec.files).join(', ') || 'none'})`,
          `${pointer}/split`,
          [
            `Add ${split} to dataset.split's ${dataset.split.ratio ? 'ratio' : 'values'}, or set ${split === dataset.eval_split ? 'eval_split' : 'train_split'} to one of its splits.`,
          ],
        );
      else if (!dataset.file)
        report('CT0307', `no file for split '${split}'`, pointer, [`Declare it: files: {${split}: path/to/file}`]);
      continue;
    }
    if (!dataset.dir && !path.isAbsolute(name)) {
      report(
        'CT0307',
        `the dataset needs dir (the directory holding ${name}) or an absolute path under files.${split}`,
        pointer,
      );
      continue;
    }
    const file = splitFile(spec, dataset.dir, split);
    const at = dataset.files?.[split]
      ? `${pointer}/files/${split}`
      : dataset.file
        ? `${pointer}/file`
        : dataset.dir
          ? `${pointer}/dir`
          : pointer;
    if (!fs.existsSync(file)) {
      report('CT0308', `data file ${file} (split '${split}') does not exist`, at);
      continue;
    }
    checkRows(dataset, spec, split, split === dataset.train_split && needsTrain, at, pointer, report);
  }
}

/** A custom data set in one file: `file` with a `split` that divides it either by a column or by a seeded ratio. */
function checkOneFile(dataset: Dataset, pointer: string, report: Report) {
  const { file, files, split } = dataset;
  const example =
    'split: {field: COLUMN, values: {train: TRAIN, dev: DEV}} or split: {ratio: {train: 0.8, dev: 0.2}, seed: 1}';
  if (file && files)
    report(
      'CT0307',
      'a custom dataset gives either files (one per split) or file (one holding every split), not both',
      `${pointer}/file`,
      ['Remove dataset.files, or dataset.file and dataset.split.'],
    );
  if (file && !split)
    report('CT0307', 'dataset.file holds every split: say how it divides into them', `${pointer}/file`, [
      `Add ${example}.`,
    ]);
  if (split && !file)
    report('CT0307', 'dataset.split divides one file: it needs dataset.file', `${pointer}/split`, [
      'Name the file with file: path/to/data.tsv (and remove files), or remove dataset.split.',
    ]);
  if (!split) return;
  const at = `${pointer}/split`;
  const byColumn = split.field !== undefined || split.values !== undefined;
  if (byColumn && split.ratio)
    report('CT0307', 'dataset.split divides by a column (field, values) or by a ratio, not both', at, [
      `Keep one: ${example}.`,
    ]);
  else if (!byColumn && !split.ratio)
    report('CT0307', 'dataset.split needs field and values, or ratio', at, [`For example ${example}.`]);
  else if (byColumn && (split.field === undefined || !split.values))
    report(
      'CT0307',
      `dataset.split by a column needs both field and values (${split.field === undefined ? 'field' : 'values'} is missing)`,
      at,
      ['For example split: {field: SemEval_set, values: {train: TRAIN, dev: TRIAL, test: TEST}}.'],
    );
  if (byColumn && split.seed !== undefined)
    report(
      'CT0303',
      'dataset.split.seed applies only to a split by ratio (a column fixes the rows of each split)',
      `${at}/seed`,
      ['Remove dataset.split.seed.'],
    );
  if (split.ratio && !sharesSumToOne(split.ratio)) {
    const sum = Object.values(split.ratio).reduce((a, b) => a + b, 0);
    report(
      'CT0105',
      `dataset.split.ratio's shares sum to ${Number(sum.toPrecision(12))}; they must sum to 1`,
      `${at}/ratio`,
      [`Each share is a fraction of the rows, e.g. {train: 0.8, dev: 0.1, test: 0.1}.`],
    );
  }
}

/**
 * Labels that differ from the task's only in case (`Entailment` for `entailment`): skipping such rows would skip
 * them all, so the fix to suggest is the spelling. Undefined when any bad row has another problem.
 */
function caseFix(dataset: Dataset, spec: TaskSpec, badLabels: Record<string, number>, bad: number): string | undefined {
  const labels = spec.labels ?? [];
  const spelled = Object.keys(badLabels).map((raw) => [raw, labels.find((l) => l.toLowerCase() === raw.toLowerCase())]);
  const rows = Object.values(badLabels).reduce((a, n) => a + n, 0);
  if (!spelled.length || rows !== bad || spelled.some(([, l]) => l === undefined)) return undefined;
  const pairs = spelled.map(([raw, l]) => `'${raw}' -> '${l}'`).join(', ');
  return dataset.task === 'custom'
    ? `The labels differ from dataset.labels only in case (${pairs}); on_bad_row: skip would skip all ${bad} of these rows. Write dataset.labels as the file spells them: [${labels.map((l) => spelled.find(([, x]) => x === l)?.[0] ?? l).join(', ')}].`
    : `The labels differ from ${dataset.task}'s only in case (${pairs}); on_bad_row: skip would skip all ${bad} of these rows. Rewrite them in the file exactly as ${labels.join(', ')}, or read the file as a custom data set with labels: [${labels.map((l) => spelled.find(([, x]) => x === l)?.[0] ?? l).join(', ')}].`;
}

const ROW_CODES = { label: 'CT0320', score: 'CT0321', row: 'CT0322', 'too-large': 'CT0323' } as const;

/** Reads a split and reports its problems: every bad row kind under its own code, an empty file, a subsample larger than the split. */
function checkRows(
  dataset: Dataset,
  spec: TaskSpec,
  split: string,
  isTrain: boolean,
  at: string,
  pointer: string,
  report: Report,
) {
  let loaded: LoadedSplit;
  try {
    loaded = loadSplit(spec, dataset.dir, split, 'skip');
  } catch (e) {
    if (!(e instanceof DataFileError)) throw e;
    report(e.kind === 'missing' ? 'CT0308' : 'CT0325', e.message, at);
    return;
  }
  if (loaded.empty) {
    report('CT0324', `data file ${loaded.file} (split '${split}') is empty`, at, [
      'The file has no data rows; check that it was written completely.',
    ]);
    return;
  }
  if (!loaded.examples.length && !loaded.skipped.count && !loaded.unlabelled) {
    report('CT0324', `split '${split}' of ${loaded.file} has no rows`, at, [emptySplitWhy(spec, split)]);
    return;
  }
  const bad = loaded.skipped.count;
  if (bad && dataset.on_bad_row === 'skip') {
    warnSkipped(
      report,
      `${bad} bad rows in ${loaded.file} will be skipped (on_bad_row: skip); first: ${loaded.problems[0].message}`,
      at,
    );
  } else if (bad) {
    const shown = loaded.problems.slice(0, 5);
    const casing = caseFix(dataset, spec, loaded.badLabels, bad);
    for (const p of shown) {
      const code = ROW_CODES[p.kind as keyof typeof ROW_CODES] ?? 'CT0322';
      const notes =
        p.kind === 'label'
          ? [`${dataset.task}'s labels: ${spec.labels!.join(', ')}`, ...(casing ? [casing] : [])]
          : p.kind === 'score' && spec.scoreRange
            ? [
                `${dataset.task} scores lie in [${spec.scoreRange.join(', ')}]; fix the row, or set on_bad_row: skip to leave such rows out.`,
              ]
            : ['Fix the row, or set on_bad_row: skip to count and skip malformed rows.'];
      report(code, p.message, at, notes);
    }
    if (bad > shown.length)
      report('CT0322', `${bad - shown.length} more bad rows in ${loaded.file}`, at, [
        casing ?? 'Fix them, or set on_bad_row: skip to count and skip them.',
      ]);
  }
  const sub = dataset.subsample;
  const n = loaded.examples.length;
  if (isTrain && sub && sub.size > n && (!bad || dataset.on_bad_row === 'skip')) {
    report(
      'CT0304',
      `subsample size ${sub.size} is larger than the '${split}' split (${n} examples)`,
      `${pointer}/subsample/size`,
      [`Use a size of at most ${n}.`],
    );
  }
}

/** Why a split of a file holding every split came out empty, and what to change. */
function emptySplitWhy(spec: TaskSpec, split: string): string {
  if (spec.splitColumn)
    return `No row has ${spec.splitColumn.field} = '${spec.splitColumn.values[split]}'${spec.id === 'custom' ? "; check dataset.split.values against the file's column" : ''}.`;
  if (spec.splitRatio)
    return `Its share ${spec.splitRatio.shares[split]} of the rows rounds to none; give it a larger share, or use more rows.`;
  return 'Check the file and the dataset settings.';
}

function checkLabelMap(
  source: Dataset,
  target: Dataset,
  labelMap: Record<string, string> | undefined,
  pointer: string,
  report: Report,
) {
  const from = taskSpecOf(source).labels;
  const to = taskSpecOf(target).labels;
  if (from === null || to === null) {
    if (labelMap) report('CT0305', 'a label map needs classification tasks on both sides', `${pointer}/label_map`);
    return;
  }
  if (!labelMap) {
    const same = from.length === to.length && from.every((l, i) => l === to[i]);
    if (!same)
      report(
        'CT0305',
        `the source labels (${from.join(', ')}) differ from the target's (${to.join(', ')}); a label_map is needed`,
        pointer,
        [`Map every source label to a target label, e.g. label_map: {${from.map((l) => `${l}: ${to[0]}`).join(', ')}}`],
      );
    return;
  }
  const missing = from.filter((l) => !(l in labelMap));
  if (missing.length)
    report('CT0305', `label_map does not cover the source labels ${missing.join(', ')}`, `${pointer}/label_map`, [
      `Source labels: ${from.join(', ')}`,
    ]);
  for (const [k, v] of Object.entries(labelMap)) {
    if (!from.includes(k))
      report(
        'CT0305',
        `label_map key '${k}' is not a source label`,
        pointerOf([...pointer.slice(1).split('/'), 'label_map', k]),
        undefined,
        closest(k, from),
      );
    if (!to.includes(v))
      report(
        'CT0305',
        `label_map value '${v}' is not a target label (${to.join(', ')})`,
        pointerOf([...pointer.slice(1).split('/'), 'label_map', k]),
        undefined,
        closest(v, to),
      );
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
      report(
        'CT0310',
        `metric '${m}' does not apply to ${recipe.dataset.task} (${isRegression ? 'regression' : `${spec.labels!.length}-way classification`})`,
        `/evaluation/metrics/${i}`,
        [`This task's metrics: ${spec.metrics.join(', ')}`],
      );
    }
  });
}

/**
 * sweep.per_strategy: each key a strategy kind some trial has, each path one the recipe has, set nowhere else in the
 * sweep, and not the strategy itself (which decides whose settings apply).
 */
function checkPerStrategy(recipe: Recipe, report: Report) {
  const sweep = recipe.sweep;
  if (!sweep?.per_strategy) return;
  const known = (deref(recipeSchema.$defs?.strategy)?.properties?.kind?.enum ?? []) as string[];
  const kinds = sweptKinds(sweep, recipe.strategy.kind);
  const elsewhere = new Set([...Object.keys(sweep.grid ?? {}), ...Object.keys(sweep.random?.space ?? {})]);
  for (const [kind, axes] of Object.entries(sweep.per_strategy)) {
    const at = ['sweep', 'per_strategy', kind];
    if (!known.includes(kind)) {
      report(
        'CT0105',
        `sweep.per_strategy.${kind} is not a strategy kind`,
        pointerOf(at),
        [`Kinds: ${known.join(', ')}`],
        closest(kind, known),
      );
      continue;
    }
    if (!kinds.has(kind))
      report(
        'CT0306',
        `sweep.per_strategy.${kind} applies to no trial: the sweep's strategies are ${[...kinds].join(', ')}`,
        pointerOf(at),
        [`Add ${kind} to the swept strategies, or remove sweep.per_strategy.${kind}.`],
        undefined,
        'warning',
      );
    checkSweepPaths(Object.keys(axes), at, report);
    for (const key of Object.keys(axes)) {
      if (key === 'strategy' || key === 'strategy.kind')
        report(
          'CT0306',
          `sweep.per_strategy.${kind} cannot set ${key}: the strategy decides whose settings apply`,
          pointerOf([...at, key]),
          ['Sweep strategies in sweep.grid; per_strategy holds their other settings.'],
        );
      else if ([...elsewhere].some((e) => e === key || e.startsWith(`${key}.`) || key.startsWith(`${e}.`)))
        report(
          'CT0306',
          `sweep path '${key}' is set both by sweep.per_strategy.${kind} and by sweep.grid or sweep.random`,
          pointerOf([...at, key]),
          ['Set each path in one place: per_strategy for values that depend on the strategy, the grid for the others.'],
        );
    }
  }
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
      report(
        'CT0306',
        `sweep path '${key}' does not exist in the recipe schema`,
        pointer,
        undefined,
        suggestion ? [...segments.slice(0, bad), suggestion].join('.') : undefined,
      );
    }
  }
}
