import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { submissionName, submissionValue } from '../src/data/glue-submission.js';
import { readForPrediction } from '../src/data/load.js';
import { computeMetrics, confusionMatrix, macroF1 } from '../src/data/metrics.js';
import { TASKS, taskSpecOf } from '../src/data/tasks.js';
import { readResults, singleClassNote, singleClassOf } from '../src/run/artifacts.js';
import { predictionsTsv } from '../src/run/predictions.js';
import { assertClean } from './integrity-helpers.js';
import { cli, GLUE, tinyModelRecipe, write } from './helpers.js';

/** Issue 28, "Missing": predictions and metrics. */
test('macro-F1 and the confusion matrix, computed by hand', () => {
  // gold 0 0 1 1 2 2, predicted 0 0 1 2 2 1: per class F1 1, 1/2, 1/2.
  const gold = [0, 0, 1, 1, 2, 2];
  const pred = [0, 0, 1, 2, 2, 1];
  assert.deepEqual(confusionMatrix(pred, gold, 3), [
    [2, 0, 0],
    [0, 1, 1],
    [0, 1, 1],
  ]);
  assert.equal(macroF1(pred, gold), 2 / 3);
  // A class only predicted (2) and one never predicted (1) count as F1 0, as scikit-learn's average='macro'.
  assert.equal(macroF1([0, 0, 2], [0, 1, 1]), 2 / 3 / 3);
  assert.deepEqual(computeMetrics(['accuracy', 'macro_f1'], pred, gold), { accuracy: 4 / 6, macro_f1: 2 / 3 });
  assert.throws(() => confusionMatrix([3], [0], 3), /outside 0\.\.2/);
  // Multi-class tasks report it by default, after the metric that picks the best epoch; binary ones do not.
  assert.deepEqual(TASKS['glue/mnli'].metrics, ['accuracy', 'macro_f1']);
  assert.deepEqual(TASKS.snli.metrics, ['accuracy', 'macro_f1']);
  assert.deepEqual(TASKS['glue/rte'].metrics, ['accuracy']);
  assert.deepEqual(taskSpecOf({ task: 'custom', labels: ['a', 'b', 'c'] }).metrics, ['accuracy', 'macro_f1']);
});

test("a run that predicted one class says so in its summary line, by the class's name", () => {
  assert.equal(
    singleClassNote({ predicted_classes: { entailment: 0, not_entailment: 277 } }),
    " (warning: predicted 'not_entailment' for every evaluation example, a constant answer's score)",
  );
  assert.equal(singleClassNote({ predicted_classes: { entailment: 3, not_entailment: 274 } }), '');
  assert.equal(singleClassNote({}), '', 'a run written before predictions were checked');
});

test("results.json's confusion matrix is read back checked: a damaged one is refused, naming the field", () => {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'childtune-confusion-'));
  const file = path.join(dir, 'results.json');
  const base = { task: 'glue/rte', strategy: 'vanilla', seed: 1, metrics: { accuracy: 0.5 } };
  const labels = ['entailment', 'not_entailment'];
  const matrix = [
    [3, 1],
    [2, 4],
  ];
  fs.writeFileSync(file, JSON.stringify({ ...base, confusion_matrix: { labels, matrix } }));
  assert.deepEqual(readResults(file).confusion, { labels, matrix });
  fs.writeFileSync(file, JSON.stringify(base));
  assert.equal(readResults(file).confusion, null, 'a run written before confusion matrices');
  fs.writeFileSync(file, JSON.stringify({ ...base, confusion_matrix: { labels, matrix: [[3, 1], [2]] } }));
  assert.throws(() => readResults(file), /"confusion_matrix" must be an object with n class names/);
});

test('the predictions layout: index, line, gold, predicted, one probability per class (softmax)', () => {
  const rows = [
    { index: 0, line: 2, gold: 1, logits: Float32Array.from([0, Math.log(3)]) },
    { index: 1, line: 3, gold: NaN, logits: Float32Array.from([1, 0]) },
  ];
  assert.equal(
    predictionsTsv(rows, ['no', 'yes']),
    'index\tline\tgold\tpredicted\tp_no\tp_yes\n0\t2\tyes\tyes\t0.250000\t0.750000\n1\t3\t\tno\t0.731059\t0.268941\n',
  );
  const scores = [{ index: 0, line: 2, gold: 3.5, logits: Float32Array.from([1.25]) }];
  assert.equal(predictionsTsv(scores, null), 'index\tline\tgold\tpredicted\n0\t2\t3.500000\t1.250000\n');
});

test("GLUE submission files: the server's file names and label names, STS-B clipped to [0, 5]", () => {
  assert.equal(submissionName('glue/rte', 'test.tsv'), 'RTE');
  assert.equal(submissionName('glue/sst-2', 'test.tsv'), 'SST-2');
  assert.equal(submissionName('glue/mnli', 'test_matched.tsv'), 'MNLI-m');
  assert.equal(submissionName('glue/mnli', 'test_mismatched.tsv'), 'MNLI-mm');
  assert.equal(submissionName('glue/mnli', 'diagnostic.tsv'), 'AX');
  assert.equal(submissionName('snli', 'test.jsonl'), undefined);
  assert.equal(submissionValue('glue/rte', 1), 'not_entailment');
  assert.equal(submissionValue('glue/qnli', 0), 'entailment');
  assert.deepEqual(
    [0, 1, 2].map((c) => submissionValue('glue/mnli', c)),
    ['entailment', 'neutral', 'contradiction'],
  );
  assert.equal(submissionValue('glue/cola', 1), '1');
  assert.equal(submissionValue('glue/sts-b', 5.7), '5.000');
  assert.equal(submissionValue('glue/sts-b', -0.2), '0.000');
  assert.equal(submissionValue('glue/sts-b', 2.3456), '2.346');
});

test('a file to predict keeps rows without a gold label, names each by its index column, and names a bad row', () => {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'childtune-predict-'));
  const spec = taskSpecOf({ task: 'custom', labels: ['a', 'b'] });
  const file = write(
    dir,
    'x.jsonl',
    '{"id": 7, "text": "one", "label": "b"}\n{"id": 9, "text": "two"}\n{"id": 11, "text": "three", "label": ""}\n',
  );
  const read = readForPrediction(spec, file);
  assert.deepEqual(
    read.examples.map((e) => [e.id, e.textA, e.label, e.line]),
    [
      ['7', 'one', 1, 1],
      ['9', 'two', NaN, 2],
      ['11', 'three', NaN, 3],
    ],
  );
  const bad = write(dir, 'bad.jsonl', '{"text": "one"}\n{"text": \n');
  assert.throws(() => readForPrediction(spec, bad), /bad\.jsonl:2: not valid JSON/);
});

describe('a run and childtune predict', () => {
  let project: string;
  let runDir: string;
  let results: any;
  const dev = () => path.join(project, 'data', 'dev.tsv');
  const lines = (f: string) => fs.readFileSync(f, 'utf8').trimEnd().split('\n');

  before(async () => {
    // RTE's first 32 training and 40 dev rows: a small, real, two-sentence task.
    const recipe = await tinyModelRecipe(
      [
        'dataset: {task: glue/rte, dir: ./data}',
        'strategy: {kind: vanilla}',
        'training: {epochs: 1, batch_size: 8, optimizer: {lr: 0.001}}',
        'evaluation: {batch_size: 16}',
        'runtime: {output_dir: ./runs, threads: 1}',
        '',
      ].join('\n'),
    );
    project = path.dirname(recipe);
    for (const [split, n] of [
      ['train', 33],
      ['dev', 41],
    ] as const)
      write(
        project,
        `data/${split}.tsv`,
        lines(path.join(GLUE, 'RTE', `${split}.tsv`))
          .slice(0, n)
          .join('\n') + '\n',
      );
    const run = await cli(['run', recipe, '--quiet', '--json']);
    assert.equal(run.code, 0, run.err);
    runDir = JSON.parse(run.out)[0].dir;
    results = JSON.parse(fs.readFileSync(path.join(runDir, 'results.json'), 'utf8'));
    // Printed even with --quiet: the final score, with a warning when it is a constant answer's.
    assert.ok(
      run.err.includes(`final: accuracy ${results.metrics.accuracy.toFixed(4)}${singleClassNote(results)}\n`),
      run.err,
    );
  });

  test('every run keeps its dev predictions per example, and results.json their confusion matrix', () => {
    const rows = lines(path.join(runDir, 'predictions', 'dev.tsv')).map((l) => l.split('\t'));
    assert.deepEqual(rows[0], ['index', 'line', 'gold', 'predicted', 'p_entailment', 'p_not_entailment']);
    assert.equal(rows.length - 1, 40);
    assert.deepEqual(
      rows.slice(1).map((r) => r[1]),
      Array.from({ length: 40 }, (_, i) => String(i + 2)),
      'the file lines of the dev rows, after its header',
    );
    for (const r of rows.slice(1))
      assert.ok(Math.abs(Number(r[4]) + Number(r[5]) - 1) < 2e-6, 'probabilities sum to 1');
    const { labels, matrix } = results.confusion_matrix;
    assert.deepEqual(labels, ['entailment', 'not_entailment']);
    const counted = labels.map((g: string) =>
      labels.map((p: string) => rows.filter((r) => r[2] === g && r[3] === p).length),
    );
    assert.deepEqual(matrix, counted, 'the matrix counts the file: gold rows, predicted columns');
    const correct = rows.slice(1).filter((r) => r[2] === r[3]).length;
    assert.equal(results.metrics.accuracy, correct / 40, "the file's predictions give the run's dev score");
    assert.deepEqual(results.predicted_classes, {
      entailment: matrix[0][0] + matrix[1][0],
      not_entailment: matrix[0][1] + matrix[1][1],
    });
  });

  test("predict RUN dev-file: the run's dev score exactly, and the run's predictions row for row", async () => {
    const out = path.join(project, 'dev.predictions.tsv');
    const r = await cli(['predict', runDir, dev(), '--out', out, '--json']);
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out);
    assert.deepEqual(summary.metrics, results.metrics);
    assert.equal(summary.labelled, 40);
    assert.equal(fs.readFileSync(out, 'utf8'), fs.readFileSync(path.join(runDir, 'predictions', 'dev.tsv'), 'utf8'));
    assert.match(r.err, new RegExp(`predicted 40 rows of .*dev\\.tsv to ${out}`));
    assert.match(r.err, /scored on the 40 rows with a gold label: accuracy \d\.\d{4}/);
    assert.equal(summary.single_class, singleClassOf(results) ?? null);
  });

  test("predict applies a strategy saved apart: a prompt-tuning run's dev predictions, row for row", async () => {
    const base = fs.readFileSync(path.join(project, 'r.yaml'), 'utf8');
    const recipe = write(
      project,
      'prompt.yaml',
      base.replace('strategy: {kind: vanilla}', 'strategy: {kind: prompt-tuning, length: 4}'),
    );
    const run = await cli(['run', recipe, '--quiet', '--json']);
    assert.equal(run.code, 0, run.err);
    const promptRun = JSON.parse(run.out)[0].dir as string;
    assert.ok(
      !fs.existsSync(path.join(promptRun, 'model', 'model.safetensors')),
      'the prompt is saved apart, as PEFT saves it',
    );
    const out = path.join(project, 'prompt.predictions.tsv');
    const r = await cli(['predict', promptRun, dev(), '--out', out, '--json']);
    assert.equal(r.code, 0, r.err);
    const saved = JSON.parse(fs.readFileSync(path.join(promptRun, 'results.json'), 'utf8'));
    assert.deepEqual(JSON.parse(r.out).metrics, saved.metrics);
    assert.equal(fs.readFileSync(out, 'utf8'), fs.readFileSync(path.join(promptRun, 'predictions', 'dev.tsv'), 'utf8'));
  });

  test('--glue DIR writes the GLUE server file: the test index and the label names it expects', async () => {
    const test = write(
      project,
      'glue-test/test.tsv',
      'index\tsentence1\tsentence2\n5\tA man is sleeping.\tA man is awake.\n7\tIt rained all day.\tThe streets are wet.\n',
    );
    const submission = path.join(project, 'submission');
    const each = path.join(project, 'test.predictions.tsv');
    const r = await cli(['predict', runDir, test, '--glue', submission, '--out', each]);
    assert.equal(r.code, 0, r.err);
    const predicted = lines(path.join(submission, 'RTE.tsv'));
    const rows = lines(each)
      .slice(1)
      .map((l) => l.split('\t'));
    assert.deepEqual(predicted, ['index\tprediction', `5\t${rows[0][3]}`, `7\t${rows[1][3]}`]);
    assert.ok(predicted.slice(1).every((l) => /^\d+\t(entailment|not_entailment)$/.test(l)));
    assert.deepEqual(
      rows.map((r) => r[2]),
      ['', ''],
      'no gold label',
    );

    // A model directory with the task named: CoLA's test.tsv has a header, unlike its train and dev files.
    const cola = write(project, 'cola/test.tsv', 'index\tsentence\n0\tThe cat sat.\n1\tSat cat the.\n');
    const c = await cli(['predict', path.join(runDir, 'model'), cola, '--task', 'glue/cola', '--glue', submission]);
    assert.equal(c.code, 0, c.err);
    assert.match(fs.readFileSync(path.join(submission, 'CoLA.tsv'), 'utf8'), /^index\tprediction\n0\t[01]\n1\t[01]\n$/);
  });

  test('what predict cannot read is named, with what to pass instead', async () => {
    const other = write(project, 'other.tsv', 'index\tpremise\thypothesis\n0\ta\tb\n');
    const r = await cli(['predict', runDir, other]);
    assert.equal(r.code, 1);
    assert.match(r.err, /other\.tsv:1: no column 'sentence1' in the header \(index, premise, hypothesis\)/);
    assert.match(r.err, /--text-fields/);
    assertClean(r.err);
    const renamed = await cli(['predict', runDir, other, '--text-fields', 'premise,hypothesis', '--out', '-']);
    assert.equal(renamed.code, 0, renamed.err);
    assert.equal(renamed.out.trimEnd().split('\n').length, 2);
    const both = await cli(['predict', runDir, other, '--out', '-', '--json']);
    assert.equal(both.code, 1);
    assert.match(both.err, /--out - and --json both print to standard output/);
    const self = await cli(['predict', runDir, other, '--out', other]);
    assert.equal(self.code, 1);
    assert.match(self.err, /is the input file/);
    const sweep = await cli(['predict', project, other]);
    assert.equal(sweep.code, 1);
    assert.match(sweep.err, /holds neither recipe\.resolved\.yaml nor config\.json/);
    assertClean(sweep.err);
  });
});
