import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { glueTestSpec, submissionName, submissionValue } from '../data/glue-submission.js';
import { DataFileError } from '../data/formats.js';
import { readForPrediction } from '../data/load.js';
import { computeMetrics } from '../data/metrics.js';
import { TASKS, taskSpecOf, type Metric, type TaskSpec } from '../data/tasks.js';
import type { BuiltinTask, FileFormat } from '../data/task-spec.js';
import { selectBackend, type BackendName } from '../engine/backend.js';
import { loadSavedModel } from '../engine/saved-strategy.js';
import { modifiersFrom } from '../strategies/registry.js';
import { chooseKernels, describeKernels, selectKernel, type KernelChoice } from '../engine/native.js';
import { readModelConfig } from '../engine/config.js';
import { writeAtomic } from '../engine/files.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import type { Recipe } from '../recipe/types.generated.js';
import { isObject, readJsonFile } from './artifacts.js';
import { RunError } from './errors.js';
import { logitsOf, predictionOf } from './evaluate.js';
import { startPool, threadsFor } from './parallel.js';
import { predictionsTsv } from './predictions.js';
import type { Io } from './reporter.js';
import { makeDir } from './rundir.js';

export interface PredictOptions {
  /** Where the predictions go: a file, or '-' for standard output. */
  out?: string;
  /** A directory for the GLUE server's submission file (<TASK>.tsv) of this task. */
  glue?: string;
  /** The built-in task, for a model directory (a run names its own). */
  task?: string;
  /** Comma-separated text fields (header names or 0-based column numbers), overriding the task's. */
  textFields?: string;
  labelField?: string;
  format?: FileFormat;
  /** Whether a tsv or csv file starts with a header row, overriding the task's. */
  header?: boolean;
  maxLength?: number;
  batchSize?: number;
  backend?: BackendName | 'auto';
  threads?: number;
  json?: boolean;
}

/** What predicts: a saved model directory, with the run that wrote it where the source is a run directory. */
interface Source {
  modelDir: string;
  recipe?: Recipe;
  /** How the run evaluated: predicting the same way gives the same numbers. */
  ranWith?: { backend: BackendName; threads: number; kernel?: string };
}

const SOURCE_HINT =
  'Pass a run directory (it holds recipe.resolved.yaml and model/) or a model directory (it holds config.json).';

function resolveSource(source: string): Source {
  if (!fs.existsSync(source) || !fs.statSync(source).isDirectory())
    throw new RunError(`${source} is not a directory`, SOURCE_HINT);
  const recipeFile = path.join(source, 'recipe.resolved.yaml');
  if (fs.existsSync(path.join(source, 'sweep.lock.json')))
    throw new RunError(
      `${source} is a sweep directory, which holds one model per trial`,
      `Pass one of its trials, e.g. ${path.join(source, 'trial-000')}.`,
    );
  if (!fs.existsSync(recipeFile)) {
    if (fs.existsSync(path.join(source, 'config.json'))) return { modelDir: source };
    throw new RunError(`${source} holds neither recipe.resolved.yaml nor config.json`, SOURCE_HINT);
  }
  const modelDir = path.join(source, 'model');
  if (!fs.existsSync(path.join(modelDir, 'config.json')))
    throw new RunError(
      `${source} has no saved model (model/config.json): the run did not finish`,
      'Resume it with `childtune run --resume DIR`, or pass a finished run.',
    );
  let recipe: unknown;
  try {
    recipe = parse(fs.readFileSync(recipeFile, 'utf8'));
  } catch (e) {
    throw new RunError(`${recipeFile}: not valid YAML (${(e as Error).message.split('\n')[0]})`, SOURCE_HINT);
  }
  if (!isObject(recipe) || !isObject(recipe.dataset) || !isObject(recipe.model) || !isObject(recipe.evaluation))
    throw new RunError(
      `${recipeFile}: not a resolved childtune recipe (dataset, model or evaluation missing)`,
      SOURCE_HINT,
    );
  const resultsFile = path.join(source, 'results.json');
  const results = fs.existsSync(resultsFile) ? readJsonFile(resultsFile) : undefined;
  const ranWith =
    isObject(results) && typeof results.backend === 'string' && Number.isInteger(results.threads)
      ? {
          backend: results.backend as BackendName,
          threads: results.threads as number,
          ...(isObject(results.kernels) &&
            typeof results.kernels.kernel === 'string' && { kernel: results.kernels.kernel }),
        }
      : undefined;
  return { modelDir, recipe: recipe as unknown as Recipe, ranWith };
}

/**
 * The matrix kernels to predict with: the run's own where this CPU has them (so its dev score comes back exactly),
 * else what its recipe's settings choose here; a kernel this CPU lacks (bf16 elsewhere) falls back to exact fp32,
 * which agrees within rounding, and says so.
 */
function predictionKernels(source: Source): KernelChoice {
  const ran = source.ranWith?.kernel;
  const settings = source.recipe;
  const c = chooseKernels(settings?.runtime.kernels ?? 'auto', settings?.training.precision ?? 'fp32', ran);
  if ('kernel' in c) return c;
  const exact = chooseKernels('exact', 'fp32') as KernelChoice;
  return { ...exact, why: `${c.refused}: predicting with exact fp32 products, within rounding of the run's scores` };
}

/** A text or label field as typed: a number is a 0-based column. */
const fieldOf = (s: string) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : s.trim());

/** Class names of a saved model's config.json (id2label in index order); undefined when it has none. */
function id2label(modelDir: string, numLabels: number): string[] | undefined {
  const config = readJsonFile(path.join(modelDir, 'config.json'));
  const map = isObject(config) && isObject(config.id2label) ? config.id2label : undefined;
  const names = map && Array.from({ length: numLabels }, (_, i) => map[String(i)]);
  return names?.every((n) => typeof n === 'string') ? (names as string[]) : undefined;
}

/** The task: the run's, else --task, else a custom one over the model's own class names. */
function taskOf(source: Source, opts: PredictOptions, numLabels: number): { spec: TaskSpec; task: string } {
  if (source.recipe) {
    if (opts.task && opts.task !== source.recipe.dataset.task)
      throw new RunError(
        `--task ${opts.task}: the run trained on ${source.recipe.dataset.task}`,
        'Leave --task out for a run directory; it predicts its own task.',
      );
    return { spec: taskSpecOf(source.recipe.dataset), task: source.recipe.dataset.task };
  }
  if (opts.task) {
    if (!(opts.task in TASKS))
      throw new RunError(
        `--task ${opts.task} is not a built-in task`,
        `Built-in tasks: ${Object.keys(TASKS).join(', ')}.`,
      );
    return { spec: TASKS[opts.task as BuiltinTask], task: opts.task };
  }
  const labels = numLabels === 1 ? undefined : id2label(source.modelDir, numLabels);
  return {
    spec: taskSpecOf({
      task: 'custom',
      format: opts.format,
      labels: labels ?? Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`),
      regression: numLabels === 1,
    }),
    task: 'custom',
  };
}

/** The user's overrides of how the file is read, over the task's layout. */
function withOverrides(spec: TaskSpec, opts: PredictOptions): TaskSpec {
  const text = opts.textFields?.split(',').map(fieldOf);
  if (text && (text.length < 1 || text.length > 2 || text.some((f) => f === '')))
    throw new RunError(
      `--text-fields ${opts.textFields}: give one or two fields`,
      'Example: --text-fields sentence1,sentence2',
      undefined,
    );
  return {
    ...spec,
    ...(opts.format && { format: opts.format }),
    ...(opts.header !== undefined && { header: opts.header }),
    ...(text && { text: text as TaskSpec['text'] }),
    ...(opts.labelField && { label: fieldOf(opts.labelField) }),
  };
}

/** The file's rows; a column the layout names but the file lacks comes with the options that name others. */
function readFile(spec: TaskSpec, file: string) {
  try {
    return readForPrediction(spec, file);
  } catch (e) {
    if (e instanceof DataFileError && e.kind === 'columns')
      throw new RunError(
        e.message,
        "Name the file's fields with --text-fields A[,B] and --label-field F (header names or 0-based columns), and say --header or --no-header.",
      );
    throw e;
  }
}

/**
 * `childtune predict MODEL_DIR_OR_RUN FILE`: every row of FILE through the model, written as one prediction
 * per row (class and probabilities, or score) in the layout of a run's predictions/dev.tsv; with --glue DIR,
 * the GLUE server's submission file instead. Rows with a gold label are scored with the task's metrics.
 */
export async function predictCommand(sourceArg: string, file: string, opts: PredictOptions, io: Io): Promise<number> {
  if (opts.out === '-' && opts.json)
    throw new RunError(
      '--out - and --json both print to standard output',
      'Write the predictions to a file with --out FILE, or leave out --json.',
    );
  if (opts.out && opts.out !== '-' && path.resolve(opts.out) === path.resolve(file))
    throw new RunError(`--out ${opts.out} is the input file`, 'Name another file for the predictions.');
  const source = resolveSource(sourceArg);
  const config = readModelConfig(source.modelDir);
  const numLabels = config.numLabels ?? 2;
  const { spec: taskSpec, task } = taskOf(source, opts, numLabels);
  const glueName = opts.glue !== undefined ? submissionName(task, file) : undefined;
  if (opts.glue !== undefined && !glueName)
    throw new RunError(
      `--glue: ${task} is not a GLUE task`,
      'Submission files are written for CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE and WNLI models.',
    );
  // A GLUE test.tsv has the distributed files' columns (CoLA's with a header), whatever the run trained from.
  const spec = withOverrides(glueName ? glueTestSpec(TASKS[task as BuiltinTask]) : taskSpec, opts);
  const labels = spec.labels;
  if ((labels?.length ?? 1) !== numLabels)
    throw new RunError(
      `${source.modelDir}: the model has ${numLabels} output${numLabels === 1 ? '' : 's'}, but ${task} ${labels ? `has ${labels.length} classes` : 'is a regression task (one output)'}`,
      'Pass the model trained for this task, or the right --task.',
    );
  const read = readFile(spec, file);
  if (!read.examples.length)
    throw new RunError(`${file}: no rows to predict${read.empty ? ' (the file is empty)' : ''}`, 'Check the file.');

  const tokenizer = loadTokenizer(source.modelDir, { lowerCase: config.doLowerCase });
  // A strategy saved apart (adapters, prefixes, prompts, a PEFT LoRA) is applied: the outputs are the trained model's.
  const { model, freshHead } = loadSavedModel(source.modelDir, { numLabels, seed: 0, modifiersFrom });
  if (freshHead.length) {
    model.dispose();
    throw new RunError(
      `${source.modelDir}: the model has no trained classification head (${freshHead.join(', ')} missing or of another shape)`,
      'Pass a fine-tuned model: the model/ of a run, or a run directory.',
    );
  }
  const backend = await selectBackend(
    opts.backend ?? source.ranWith?.backend ?? source.recipe?.runtime.backend ?? 'auto',
  );
  const threads = threadsFor(
    opts.threads ?? source.ranWith?.threads ?? source.recipe?.runtime.threads ?? 0,
    backend.name,
  );
  const maxLength = opts.maxLength ?? source.recipe?.model.max_seq_length ?? Math.min(128, config.maxPositions);
  const batchSize = opts.batchSize ?? source.recipe?.evaluation.batch_size ?? 32;
  const kernels = backend.name === 'wasm' ? predictionKernels(source) : undefined;
  if (kernels) selectKernel(kernels.kernel);
  const pool = await startPool(model, {
    threads,
    backend: backend.name,
    kernel: kernels?.kernel,
    adam: { lr: 0, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
  });
  let logits: Float32Array[];
  try {
    const encodings = read.examples.map((e) => tokenizer.encode(e.textA, e.textB, maxLength));
    logits = await logitsOf(pool, numLabels, encodings, batchSize, tokenizer.padId);
  } finally {
    await pool.close();
    model.dispose();
  }

  const rows = read.examples.map((e, i) => ({ index: i, line: e.line, gold: e.label, logits: logits[i] }));
  const written: string[] = [];
  if (glueName) {
    makeDir(opts.glue!, 'submission directory', 'Pass --glue a writable directory.');
    const target = path.join(opts.glue!, `${glueName}.tsv`);
    const lines = read.examples.map((e, i) => `${e.id ?? i}\t${submissionValue(task, predictionOf(logits[i]))}`);
    writeAtomic(target, ['index\tprediction', ...lines].join('\n') + '\n');
    written.push(target);
  }
  const out = opts.out ?? (glueName ? undefined : `${path.basename(file).replace(/\.[^.]+$/, '')}.predictions.tsv`);
  if (out === '-') io.out(predictionsTsv(rows, labels).trimEnd());
  else if (out) {
    makeDir(path.dirname(path.resolve(out)), 'output directory', 'Pass --out a file in a writable directory.');
    writeAtomic(out, predictionsTsv(rows, labels));
    written.push(out);
  }

  // Scored on the rows with a gold label, by the run's metrics (or the task's).
  const labelled = rows.filter((r) => !Number.isNaN(r.gold));
  const metricNames = (source.recipe?.evaluation.metrics ?? spec.metrics) as Metric[];
  const metrics = labelled.length
    ? computeMetrics(
        metricNames,
        labelled.map((r) => predictionOf(r.logits)),
        labelled.map((r) => r.gold),
      )
    : undefined;
  // A model that answers one class for every row scores like a constant: said, as a run says it.
  const classes = [...new Set(rows.map((r) => predictionOf(r.logits)))];
  const singleClass = labels && rows.length > 1 && classes.length === 1 ? labels[classes[0]] : null;
  const summary = {
    rows: rows.length,
    labelled: labelled.length,
    written,
    metrics: metrics ?? null,
    single_class: singleClass,
    backend: backend.name,
    threads,
    ...(kernels && { kernels: kernels.kernel }),
  };
  if (opts.json) io.out(JSON.stringify(summary, null, 2));
  const where = written.length ? ` to ${written.join(' and ')}` : '';
  io.err(
    `predicted ${rows.length} row${rows.length === 1 ? '' : 's'} of ${file}${where} (${backend.name}, ${threads} thread${threads === 1 ? '' : 's'}${kernels ? `, ${describeKernels(kernels)}` : ''})`,
  );
  if (singleClass !== null)
    io.err(`warning: the model predicts '${singleClass}' for all ${rows.length} rows: a constant answer`);
  if (metrics)
    io.err(
      `scored on the ${labelled.length} row${labelled.length === 1 ? '' : 's'} with a gold label: ${Object.entries(
        metrics,
      )
        .map(([k, v]) => `${k} ${v.toFixed(4)}`)
        .join(', ')}`,
    );
  return 0;
}
