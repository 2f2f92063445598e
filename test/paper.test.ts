import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { loadSplit } from '../src/data/load.js';
import { TASKS } from '../src/data/tasks.js';
import { Rng } from '../src/engine/rng.js';
import { cli, GLUE, glueWithShortDev, REPO, tinyModel, tmpProject, write } from './helpers.js';

/**
 * Sample files in the layouts the NLI datasets are distributed in (they are not among the shipped data):
 * MNLI's 12-column TSV with header, SNLI's JSON lines with '-' for no gold label, SciTail's header-less TSV,
 * and SICK's 12-column text file with CRLF line ends and a SemEval_set column naming the split.
 */
function writeNliSamples(root: string, n = 40) {
  const rng = new Rng(5);
  const words = 'a man woman child dog is are walking running sitting on the in park street beach red blue happy'.split(
    ' ',
  );
  const sentence = () => Array.from({ length: 4 + rng.int(6) }, () => words[rng.int(words.length)]).join(' ');
  const nli = ['entailment', 'neutral', 'contradiction'];
  const mnliHeader =
    'index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label';
  const mnliRow = (i: number) => {
    const a = sentence(),
      b = sentence(),
      l = nli[i % 3];
    return [
      i,
      1000 + i,
      `${1000 + i}e`,
      'fiction',
      `( ${a} )`,
      `( ${b} )`,
      `(ROOT ${a})`,
      `(ROOT ${b})`,
      a,
      b,
      l,
      l,
    ].join('\t');
  };
  for (const f of ['train.tsv', 'dev_matched.tsv', 'dev_mismatched.tsv'])
    write(root, `glue/MNLI/${f}`, [mnliHeader, ...Array.from({ length: n }, (_, i) => mnliRow(i))].join('\n') + '\n');
  const snli = (i: number) =>
    JSON.stringify({
      annotator_labels: [nli[i % 3]],
      captionID: `${i}.jpg#0`,
      gold_label: i % 10 === 9 ? '-' : nli[i % 3],
      pairID: `${i}.jpg#0r1n`,
      sentence1: sentence(),
      sentence1_binary_parse: '( x )',
      sentence1_parse: '(ROOT x)',
      sentence2: sentence(),
      sentence2_binary_parse: '( y )',
      sentence2_parse: '(ROOT y)',
    });
  for (const s of ['train', 'dev', 'test'])
    write(root, `snli/snli_1.0_${s}.jsonl`, Array.from({ length: n }, (_, i) => snli(i)).join('\n') + '\n');
  for (const s of ['train', 'dev', 'test'])
    write(
      root,
      `scitail/scitail_1.0_${s}.tsv`,
      Array.from({ length: n }, (_, i) => `${sentence()}\t${sentence()}\t${i % 2 ? 'entails' : 'neutral'}`).join('\n') +
        '\n',
    );
  const sickHeader =
    'pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tentailment_AB\tentailment_BA\tsentence_A_original\tsentence_B_original\tsentence_A_dataset\tsentence_B_dataset\tSemEval_set';
  const sickRow = (i: number) => {
    const a = sentence(),
      b = sentence();
    return [
      i + 1,
      a,
      b,
      ['ENTAILMENT', 'NEUTRAL', 'CONTRADICTION'][i % 3],
      (1 + (i % 5)).toFixed(1),
      'A_neutral_B',
      'B_neutral_A',
      a,
      b,
      'FLICKR',
      'FLICKR',
      ['TRAIN', 'TRIAL', 'TEST'][i % 3],
    ].join('\t');
  };
  write(
    root,
    'sick/SICK.txt',
    [sickHeader, ...Array.from({ length: 3 * n }, (_, i) => sickRow(i))].join('\r\n') + '\r\n',
  );
  fs.cpSync(path.join(GLUE, 'RTE'), path.join(root, 'glue', 'RTE'), { recursive: true });
}

describe('NLI loaders read the distributed layouts', () => {
  const root = tmpProject();
  before(() => writeNliSamples(root));

  test('MNLI matched and mismatched, SNLI with unlabelled pairs, SciTail, SICK split by SemEval_set', () => {
    const mnli = loadSplit(TASKS['glue/mnli'], path.join(root, 'glue/MNLI'), 'dev', 'error');
    assert.equal(mnli.examples.length, 40);
    assert.deepEqual([mnli.examples[0].label, mnli.examples[1].label, mnli.examples[2].label], [0, 1, 2]);
    assert.match(mnli.file, /dev_matched\.tsv$/);
    assert.match(
      loadSplit(TASKS['glue/mnli-mm'], path.join(root, 'glue/MNLI'), 'dev', 'error').file,
      /dev_mismatched\.tsv$/,
    );
    const snli = loadSplit(TASKS.snli, path.join(root, 'snli'), 'train', 'error');
    assert.equal(snli.examples.length, 36);
    assert.equal(snli.unlabelled, 4);
    const scitail = loadSplit(TASKS.scitail, path.join(root, 'scitail'), 'dev', 'error');
    assert.equal(scitail.examples.length, 40);
    assert.equal(scitail.examples[1].label, 0, "'entails' is label 0");
    const sick = ['train', 'dev', 'test'].map((s) => loadSplit(TASKS.sick, path.join(root, 'sick'), s, 'error'));
    assert.deepEqual(
      sick.map((s) => s.examples.length),
      [40, 40, 40],
    );
    assert.ok(
      sick[0].examples.every((e) => !e.textB?.endsWith('\r')),
      'CRLF stripped',
    );
  });
});

describe('bundled paper recipes', () => {
  const data = tmpProject();
  const project = tmpProject();
  const model = path.join(project, 'model');
  before(async () => {
    writeNliSamples(data);
    // Dev files cut short: scoring every trial on a whole dev set took a quarter of this test's time.
    glueWithShortDev(data, ['CoLA', 'MRPC', 'RTE', 'STS-B']);
    await tinyModel(model);
    process.env.CHILDTUNE_DATA = data;
    process.env.CHILDTUNE_MODEL = model;
  });

  const recipes = ['glue', 'low-resource', 'transfer']
    .flatMap((d) => fs.readdirSync(path.join(REPO, 'recipes', 'paper', d)).map((f) => `recipes/paper/${d}/${f}`))
    .sort();

  test('cover the four GLUE tasks, their low-resource variants, domain transfer and task transfer', () => {
    assert.equal(recipes.filter((r) => r.includes('/glue/')).length, 4);
    assert.equal(recipes.filter((r) => r.includes('/low-resource/')).length, 4);
    assert.equal(recipes.filter((r) => r.includes('/domain-')).length, 2);
    assert.equal(recipes.filter((r) => r.includes('/task-from-')).length, 4);
  });

  for (const recipe of recipes) {
    test(`${recipe}: the full recipe plans 3 strategies x 10 seeds; a small variant runs on sample data`, async () => {
      const file = path.join(REPO, recipe);
      const plan = await cli(['plan', file, '--json']);
      assert.equal(plan.code, 0, plan.err);
      assert.equal(JSON.parse(plan.out).trials.length, 30);
      const small = [
        '--set',
        'sweep.seeds=[1]',
        '--set',
        'training.epochs=1',
        '--set',
        'training.batch_size=8',
        '--set',
        'model.max_seq_length=32',
        // One thread: at this size a worker's start-up costs more than it shares (the threaded paths have their own tests).
        '--set',
        'runtime.threads=1',
        '--set',
        'dataset.subsample={size: 24, seed: 0, stratified: false}',
        '--set',
        `runtime.output_dir=${path.join(project, 'runs')}`,
        '--set',
        `runtime.cache_dir=${path.join(project, 'cache')}`,
      ];
      // Task-transfer probes train on a subsample of each target too.
      if (recipe.includes('task-from-'))
        for (const k of [0, 1, 2])
          small.push('--set', `transfer.task.${k}.dataset.subsample={size: 24, seed: 0, stratified: false}`);
      const r = await cli(['sweep', file, ...small, '--quiet', '--json']);
      assert.equal(r.code, 0, r.err);
      const trials = JSON.parse(r.out);
      assert.deepEqual(
        trials.map((t: { strategy: string }) => t.strategy),
        ['vanilla', 'child-tuning-f', 'child-tuning-d'],
      );
      for (const t of trials) {
        const [metric] = Object.values(t.metrics) as number[];
        assert.ok(Number.isFinite(metric));
        for (const target of Object.values(t.transfer) as Record<string, number>[])
          for (const v of Object.values(target)) assert.ok(Number.isFinite(v));
      }
      if (recipe.includes('domain-')) assert.equal(Object.keys(trials[0].transfer).length, 4);
      if (recipe.includes('task-from-')) assert.equal(Object.keys(trials[0].transfer).length, 3);
    });
  }
});
