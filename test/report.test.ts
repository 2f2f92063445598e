import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import tQuantile from '@stdlib/stats-base-dists-t-quantile';
import { cli, tmpProject } from './helpers.js';
import { fakeRun, paperLikeRuns } from './report-fixtures.js';
import { CHROMIUM, inspectPage } from './report-browser.js';

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));
const rowsOf = (report: { table: { rows: { strategy: string }[] } }) => report.table.rows.map((r) => r.strategy);

describe('report on vanilla, F and D over five seeds, two models, a repeated D seed set', () => {
  const root = paperLikeRuns(tmpProject());
  const out = path.join(root, 'report');
  let run: Awaited<ReturnType<typeof cli>>;
  let report: any;

  before(async () => {
    // The sweep directory and one of its trials are both passed: that trial is reached twice.
    run = await cli(['report', root, path.join(root, 'sweep', 'trial-000'), '--out', out]);
    assert.equal(run.code, 0, run.err);
    report = readJson(path.join(out, 'report.json'));
  });

  test('rows are grouped by model and strategy; the same seed on another model is never merged', () => {
    assert.deepEqual(rowsOf(report), [
      'vanilla [bert-mini]',
      'vanilla [bert-tiny]',
      'child-tuning-d (p=0.3) [bert-tiny]',
      'child-tuning-f (p=0.3) [bert-tiny]',
    ]);
    assert.deepEqual(report.table.columns, ['glue/rte', 'glue/sst-2']);
    const [mini, tiny] = report.table.rows;
    assert.deepEqual(mini.cells['glue/sst-2'].seeds, [1, 2]);
    assert.equal(mini.cells['glue/rte'], null);
    assert.deepEqual(tiny.cells['glue/sst-2'].seeds, [1, 2, 3, 4, 5]);
    assert.ok(Math.abs(mini.cells['glue/sst-2'].mean - 0.815) < 1e-12, 'the bert-mini runs alone');
  });

  test('a seed run twice counts once and is flagged; the same run reached twice is counted once, with a note', () => {
    const d = report.table.rows[2].cells['glue/sst-2'];
    assert.equal(d.n, 5);
    assert.deepEqual(d.seeds, [1, 2, 3, 4, 5]);
    const perSeed = [1, 2, 3, 4, 5].map((s) => {
      const files = [
        path.join(root, `sst2-d-again-${s}`),
        path.join(root, 'sweep', `trial-${String(9 + s).padStart(3, '0')}`),
      ];
      return files.map((f) => readJson(path.join(f, 'results.json')).metrics.accuracy).reduce((a, b) => a + b) / 2;
    });
    assert.ok(Math.abs(d.mean - perSeed.reduce((a, b) => a + b) / 5) < 1e-12, 'each seed as the mean of its two runs');
    assert.equal(report.runs.length, 37);
    assert.match(
      run.err,
      /warning: child-tuning-d \(p=0\.3\) \[bert-tiny\] on glue\/sst-2: seeds 1, 2, 3, 4, 5 ran more than once, with different results/,
    );
    assert.match(
      run.err,
      /trial-000 is the same run as .*trial-000 \(reached through two of the given directories\); counted once/,
    );
    assert.ok(report.warnings.length >= 2);
  });

  test('Markdown, LaTeX and CSV print the numbers report.json holds; --format picks what is printed', async () => {
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    const tex = fs.readFileSync(path.join(out, 'report.tex'), 'utf8');
    for (const row of report.table.rows) {
      for (const c of report.table.columns) {
        const x = row.cells[c];
        if (!x) continue;
        const mean = (100 * x.mean).toFixed(2),
          std = (100 * x.std).toFixed(2),
          max = (100 * x.max).toFixed(2);
        assert.ok(md.includes(`${mean} ± ${std}`), `${row.strategy} ${c} in Markdown`);
        assert.match(
          tex,
          new RegExp(`(\\\\textbf\\{)?${mean}\\}? \\$\\\\pm\\$ ${std}(\\$\\^\\{\\*\\}\\$)? & (\\\\textbf\\{)?${max}`),
          `${row.strategy} ${c} in LaTeX`,
        );
      }
    }
    const latex = await cli(['report', root, '--out', out, '--format', 'latex']);
    assert.equal(latex.out.trim(), tex.trim());
    assert.equal((await cli(['report', root, '--out', out, '--format', 'pdf'])).code, 2);
  });

  test('LaTeX: booktabs, the best of each column in bold, and it compiles', (t) => {
    const tex = fs.readFileSync(path.join(out, 'report.tex'), 'utf8');
    assert.match(tex, /\\toprule[\s\S]*\\midrule[\s\S]*\\bottomrule/);
    // D has the best mean and max on both tasks in this set.
    const dRow = tex.split('\n').find((l) => l.startsWith('child-tuning-d'))!;
    assert.equal((dRow.match(/\\textbf\{/g) ?? []).length, 4, dRow);
    if (!fs.existsSync('/usr/bin/pdflatex'))
      return t.skip('no pdflatex here (apt-get install texlive-latex-base texlive-latex-recommended)');
    const dir = fs.mkdtempSync(path.join(root, 'tex-'));
    fs.writeFileSync(
      path.join(dir, 'doc.tex'),
      `\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\begin{document}\n${tex}\\end{document}\n`,
    );
    const r = spawnSync('pdflatex', ['-interaction=nonstopmode', '-halt-on-error', 'doc.tex'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stdout.slice(-2000));
    assert.ok(fs.statSync(path.join(dir, 'doc.pdf')).size > 1000);
    assert.doesNotMatch(r.stdout, /Undefined control sequence|Missing character/);
  });

  test('each figure is an SVG file that parses and carries axis titles, with a PNG and a PDF beside it', () => {
    const dir = path.join(out, 'figures');
    const svgs = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.svg'))
      .sort();
    assert.deepEqual(
      svgs.filter((f) => f.includes('sst-2')),
      [
        'fisher-glue-sst-2.svg',
        'kept-glue-sst-2.svg',
        'loss-glue-sst-2-runs.svg',
        'loss-glue-sst-2.svg',
        'metric-glue-sst-2-runs.svg',
        'metric-glue-sst-2.svg',
      ],
    );
    const texts = (node: unknown): string[] =>
      typeof node === 'string'
        ? [node]
        : Array.isArray(node)
          ? node.flatMap(texts)
          : node && typeof node === 'object'
            ? Object.values(node).flatMap(texts)
            : typeof node === 'number'
              ? [String(node)]
              : [];
    const parser = new XMLParser({ ignoreAttributes: false, preserveOrder: true });
    for (const f of svgs) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      assert.equal(XMLValidator.validate(text), true, `${f} is well-formed XML`);
      const doc = parser.parse(text);
      assert.ok(doc[0].svg, `${f} is an SVG`);
      // Axis titles are the role-axis-title text marks.
      const titles = [...text.matchAll(/class="mark-text role-axis-title"[^>]*>(.*?)<\/g>/g)].map((m) =>
        texts(parser.parse(m[1])).join(' '),
      );
      assert.equal(titles.length, 2, `${f}: two axis titles, found ${titles.join(' | ')}`);
      assert.ok(fs.statSync(path.join(dir, f.replace(/\.svg$/, '.png'))).size > 5000, `${f}: PNG beside it`);
      const pdf = fs.readFileSync(path.join(dir, f.replace(/\.svg$/, '.pdf')));
      assert.equal(pdf.subarray(0, 5).toString(), '%PDF-', `${f}: PDF beside it`);
    }
    const loss = fs.readFileSync(path.join(dir, 'loss-glue-sst-2.svg'), 'utf8');
    assert.match(loss, /epoch \(logged steps, fractional\)/);
    assert.match(loss, /training loss/);
    assert.match(fs.readFileSync(path.join(dir, 'metric-glue-sst-2.svg'), 'utf8'), />epoch</);
    const fisher = fs.readFileSync(path.join(dir, 'fisher-glue-sst-2.svg'), 'utf8');
    assert.match(fisher, /log scale/);
    assert.match(fisher, /threshold \d\.\d\de-\d/);
  });

  test('headless Chromium at 1300 px: no horizontal overflow, nothing over a plot area, one legend entry per row', async (t) => {
    if (!CHROMIUM) return t.skip('no Chromium here (apt-get install chromium)');
    const html = path.join(out, 'report.html');
    assert.doesNotMatch(
      fs.readFileSync(html, 'utf8'),
      /<script|(src|href)=["']?https?:|@import|url\(/,
      'self-contained, no script',
    );
    const page = await inspectPage(html, 1300, path.join(out, 'report-1300.png'));
    assert.ok(
      page.scrollWidth <= page.viewportWidth,
      `page is ${page.scrollWidth} px wide in a ${page.viewportWidth} px window`,
    );
    assert.deepEqual(page.overlaps, []);
    assert.deepEqual(page.clipped, []);
    const rowsWith = (c: string) => report.table.rows.filter((r: any) => r.cells[c]).map((r: any) => r.strategy);
    for (const c of ['glue/rte', 'glue/sst-2']) {
      const id = c.replace(/[^a-z0-9]+/g, '-');
      assert.deepEqual(page.legends[`loss-${id}`], rowsWith(c), `loss legend on ${c}`);
      assert.deepEqual(page.legends[`metric-${id}`], rowsWith(c), `metric legend on ${c}`);
    }
    assert.equal(page.perRunOpen, false, 'per-run view closed by default');
    assert.equal(page.perRunFigures, 4, 'loss and metric per run, per task');
    assert.ok(fs.statSync(path.join(out, 'report-1300.png')).size > 50_000);
  });
});

describe('significance against the baseline', () => {
  // Hand-made: vanilla and D on seeds 1-3 (paired), F on seeds 4-7 (Welch against vanilla).
  const root = tmpProject();
  const vanilla = [0.8, 0.83, 0.81],
    d = [0.84, 0.86, 0.855],
    f = [0.79, 0.85, 0.83, 0.86];
  vanilla.forEach((score, i) =>
    fakeRun(path.join(root, `v${i}`), { task: 'glue/rte', strategy: 'vanilla', seed: i + 1, score }),
  );
  d.forEach((score, i) =>
    fakeRun(path.join(root, `d${i}`), { task: 'glue/rte', strategy: 'child-tuning-d', seed: i + 1, score }),
  );
  f.forEach((score, i) =>
    fakeRun(path.join(root, `f${i}`), { task: 'glue/rte', strategy: 'child-tuning-f', seed: i + 4, score }),
  );

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = (xs: number[]) => xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1);
  /** Student t quantile by bisection on the CDF, the CDF by Simpson's rule over x = tan(θ): independent of the library. */
  const quantile = (p: number, df: number) => {
    const density = (th: number) => {
      const x = Math.tan(th);
      return (1 + (x * x) / df) ** (-(df + 1) / 2) / Math.cos(th) ** 2;
    };
    const integral = (a: number, b: number, n = 20_000) => {
      const h = (b - a) / n;
      let s = density(a) + density(b);
      for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * density(a + i * h);
      return (s * h) / 3;
    };
    const edge = Math.PI / 2 - 1e-9,
      total = integral(-edge, edge);
    let lo = 0,
      hi = 100;
    for (let i = 0; i < 60; i++) {
      const mid = (lo + hi) / 2;
      if (0.5 + integral(0, Math.atan(mid)) / total < p) lo = mid;
      else hi = mid;
    }
    return (lo + hi) / 2;
  };

  test('the t quantile is exact (tabulated values)', () => {
    for (const [df, q] of [
      [1, 12.706204736174707],
      [2, 4.302652729749464],
      [4, 2.7764451051977934],
      [10, 2.2281388519649385],
      [30, 2.0422724563012373],
    ])
      assert.ok(Math.abs(tQuantile(0.975, df) - q) < 1e-9, `df ${df}`);
    assert.ok(Math.abs(tQuantile(0.975, 3.7) - quantile(0.975, 3.7)) < 1e-6);
  });

  test('paired by seed when the seeds match, Welch otherwise; both match an independent computation', async () => {
    const r = await cli(['report', root, '--out', path.join(root, 'out')]);
    assert.equal(r.code, 0, r.err);
    const sig = readJson(path.join(root, 'out', 'report.json')).significance;
    const paired = sig.find((s: any) => s.row.startsWith('child-tuning-d'));
    const diffs = d.map((x, i) => x - vanilla[i]);
    const half = quantile(0.975, 2) * Math.sqrt(variance(diffs) / 3);
    assert.equal(paired.method, 'paired t');
    assert.ok(Math.abs(paired.diff - mean(diffs)) < 1e-12);
    assert.ok(
      Math.abs(paired.lo - (mean(diffs) - half)) < 1e-6 && Math.abs(paired.hi - (mean(diffs) + half)) < 1e-6,
      JSON.stringify(paired),
    );
    assert.equal(paired.significant, paired.lo > 0);

    const welch = sig.find((s: any) => s.row.startsWith('child-tuning-f'));
    const a = variance(f) / 4,
      b = variance(vanilla) / 3;
    const df = (a + b) ** 2 / ((a * a) / 3 + (b * b) / 2);
    const wHalf = quantile(0.975, df) * Math.sqrt(a + b);
    assert.equal(welch.method, 'Welch t');
    assert.ok(Math.abs(welch.df - df) < 1e-9);
    assert.ok(
      Math.abs(welch.lo - (mean(f) - mean(vanilla) - wHalf)) < 1e-6 &&
        Math.abs(welch.hi - (mean(f) - mean(vanilla) + wHalf)) < 1e-6,
      JSON.stringify(welch),
    );
    assert.equal(welch.significant, false);
    assert.match(welch.note, /fewer than 5 seeds/);

    // Marked in the table, the Markdown and the HTML.
    const md = r.out;
    assert.match(
      md,
      /\| child-tuning-d \(p=0\.3\) \| glue\/rte \| \+\d\.\d\d\*? \| \[[+−]\d\.\d\d, [+−]\d\.\d\d\] \| paired t \| 3 vs 3 \|/,
    );
    assert.match(
      md,
      /\| child-tuning-f \(p=0\.3\) \| glue\/rte \| \+\d\.\d\d \| \[−\d\.\d\d, \+\d\.\d\d\] \| Welch t \| 4 vs 3 \|/,
    );
    assert.match(md, /note: fewer than 5 seeds/);
    const html = fs.readFileSync(path.join(root, 'out', 'report.html'), 'utf8');
    assert.match(html, /paired t/);
    assert.match(html, /Welch t/);
  });

  test('--baseline picks another strategy; one that no run has is an error', async () => {
    const r = await cli([
      'report',
      root,
      '--out',
      path.join(root, 'out2'),
      '--baseline',
      'child-tuning-f',
      '--format',
      'json',
    ]);
    assert.equal(r.code, 0, r.err);
    const sig = readJson(path.join(root, 'out2', 'report.json')).significance;
    assert.deepEqual(
      sig.map((s: any) => s.row),
      ['child-tuning-d (p=0.3)', 'vanilla'],
    );
    assert.ok(sig.every((s: any) => s.method === 'Welch t' && s.baseline === 'child-tuning-f (p=0.3)'));
    const bad = await cli(['report', root, '--out', path.join(root, 'out3'), '--baseline', 'lora']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--baseline lora: no run has that strategy/);
  });
});

test('runs that differ in a field that was not swept are kept apart, the row naming the field', async () => {
  const root = tmpProject();
  for (const seed of [1, 2]) {
    fakeRun(path.join(root, `a${seed}`), {
      task: 'glue/rte',
      strategy: 'vanilla',
      seed,
      score: 0.6 + seed / 100,
      lr: 2e-5,
    });
    fakeRun(path.join(root, `b${seed}`), {
      task: 'glue/rte',
      strategy: 'vanilla',
      seed,
      score: 0.7 + seed / 100,
      lr: 1e-4,
    });
  }
  const r = await cli(['report', root, '--format', 'json']);
  assert.equal(r.code, 0, r.err);
  const table = JSON.parse(r.out);
  assert.deepEqual(
    table.rows.map((x: any) => x.strategy),
    ['vanilla training.lr=0.00002', 'vanilla training.lr=0.0001'],
  );
  assert.deepEqual(
    table.rows.map((x: any) => x.cells['glue/rte'].n),
    [2, 2],
  );
  assert.match(r.err, /4 vanilla runs on glue\/rte differ in training\.lr \(not swept\); they are kept apart/);
});

describe('a foreign or damaged run directory is named with what is wrong', () => {
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"task": ', /results\.json: not valid JSON/],
    [
      'another tool',
      JSON.stringify({ eval_accuracy: 0.9, epoch: 3 }),
      /results\.json: not a childtune results file \(missing "task", "strategy", "seed", "metrics"\)/,
    ],
    ['a list', '[1, 2]', /results\.json: not a childtune results file \(expected an object, found a list\)/],
    [
      'a bad seed',
      JSON.stringify({ task: 'glue/rte', strategy: 'vanilla', seed: 'one', metrics: { accuracy: 0.5 } }),
      /results\.json: "seed" must be an integer, found string "one"/,
    ],
    [
      'a bad metric',
      JSON.stringify({ task: 'glue/rte', strategy: 'vanilla', seed: 1, metrics: { accuracy: 'high' } }),
      /results\.json: "metrics\.accuracy" must be a number, found string "high"/,
    ],
  ];
  for (const [what, text, message] of cases) {
    test(what, async () => {
      const dir = tmpProject();
      fs.mkdirSync(path.join(dir, 'run'));
      fs.writeFileSync(path.join(dir, 'run', 'results.json'), text);
      const r = await cli(['report', dir]);
      assert.equal(r.code, 1);
      assert.match(r.err, message);
      assert.ok(r.err.includes(path.join(dir, 'run', 'results.json')), r.err);
      assert.doesNotMatch(r.err, /looks like a bug|\n\s+at /);
    });
  }

  test('a damaged mask-stats.json or recipe.resolved.yaml', async () => {
    const dir = tmpProject();
    fakeRun(path.join(dir, 'run'), { task: 'glue/rte', strategy: 'child-tuning-d', seed: 1, score: 0.6 });
    fs.writeFileSync(
      path.join(dir, 'run', 'mask-stats.json'),
      JSON.stringify({ per_layer: { 'layer.0': 0.5 }, fisher: { threshold: 'x' } }),
    );
    let r = await cli(['report', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /mask-stats\.json: "fisher" must hold a threshold and a histogram/);
    fakeRun(path.join(dir, 'run'), { task: 'glue/rte', strategy: 'child-tuning-d', seed: 1, score: 0.6 });
    fs.writeFileSync(path.join(dir, 'run', 'recipe.resolved.yaml'), 'model: [unclosed');
    r = await cli(['report', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /recipe\.resolved\.yaml: not valid YAML/);
    assert.doesNotMatch(r.err, /looks like a bug/);
  });
});

test('a swept setting makes its own rows, in every figure and test too; each is compared with the baseline at the same setting', async () => {
  const root = tmpProject();
  let trial = 0;
  for (const task of ['glue/rte', 'glue/mrpc']) {
    for (const strategy of ['vanilla', 'child-tuning-d'] as const) {
      for (const lr of [1e-5, 2e-5]) {
        for (const seed of [1, 2]) {
          const score = 0.6 + (strategy === 'vanilla' ? 0 : 0.02) + lr * 1000 + seed / 1000;
          fakeRun(path.join(root, 'sweep', `trial-${trial++}`), {
            task,
            strategy,
            seed,
            lr,
            score,
            metric: task === 'glue/mrpc' ? 'f1' : 'accuracy',
            overrides: { 'strategy.kind': strategy, 'training.lr': lr, 'training.seed': seed },
          });
        }
      }
    }
  }
  const r = await cli(['report', root, '--out', path.join(root, 'out')]);
  assert.equal(r.code, 0, r.err);
  const report = readJson(path.join(root, 'out', 'report.json'));
  assert.deepEqual(rowsOf(report), [
    'vanilla training.lr=0.00001',
    'vanilla training.lr=0.00002',
    'child-tuning-d (p=0.3) training.lr=0.00001',
    'child-tuning-d (p=0.3) training.lr=0.00002',
  ]);
  assert.deepEqual(report.table.columns, ['glue/mrpc', 'glue/rte']);
  assert.ok(report.table.rows.every((row: any) => report.table.columns.every((c: string) => row.cells[c].n === 2)));
  assert.deepEqual(
    report.significance.map((s: any) => [s.row, s.baseline, s.column]),
    [
      ['child-tuning-d (p=0.3) training.lr=0.00001', 'vanilla training.lr=0.00001', 'glue/mrpc'],
      ['child-tuning-d (p=0.3) training.lr=0.00001', 'vanilla training.lr=0.00001', 'glue/rte'],
      ['child-tuning-d (p=0.3) training.lr=0.00002', 'vanilla training.lr=0.00002', 'glue/mrpc'],
      ['child-tuning-d (p=0.3) training.lr=0.00002', 'vanilla training.lr=0.00002', 'glue/rte'],
    ],
  );
  // Same seeds, constant gap: the paired interval has no spread to speak of.
  assert.ok(report.significance.every((s: any) => s.method === 'paired t' && Math.abs(s.diff - 0.02) < 1e-9));
  const loss = fs.readFileSync(path.join(root, 'out', 'figures', 'loss-glue-rte.svg'), 'utf8');
  for (const row of rowsOf(report)) assert.ok(loss.includes(`>${row}<`), `${row} in the loss legend`);
});

test('a single seed has no standard deviation, printed as a dash rather than 0', async () => {
  const root = tmpProject();
  fakeRun(path.join(root, 'one'), { task: 'glue/sts-b', strategy: 'vanilla', seed: 1, score: 0.8, metric: 'pearson' });
  const r = await cli(['report', root, '--out', path.join(root, 'out')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\| vanilla \| 80\.00 ± – \(max 80\.00, n=1\) \|/);
  assert.equal(readJson(path.join(root, 'out', 'report.json')).table.rows[0].cells['glue/sts-b'].std, null);
  assert.match(
    fs.readFileSync(path.join(root, 'out', 'report.tex'), 'utf8'),
    /vanilla & \\textbf\{80\.00\} \$\\pm\$ -- & \\textbf\{80\.00\} \\\\/,
  );
});

describe('a sweep over whole strategy blocks, as the paper recipes run (issue 28)', () => {
  // Vanilla, F and D over three seeds, the grid's key being `strategy` itself; seed 3 of F predicted one class.
  const root = tmpProject();
  const kinds = [
    { kind: 'vanilla' },
    { kind: 'child-tuning-f', reserve_p: 0.3 },
    { kind: 'child-tuning-d', reserve_p: 0.3 },
  ];
  let trial = 0;
  for (const block of kinds)
    for (const seed of [1, 2, 3]) {
      const oneClass = block.kind === 'child-tuning-f' && seed === 3;
      fakeRun(path.join(root, 'sweep', `trial-${String(trial++).padStart(3, '0')}`), {
        task: 'glue/rte',
        strategy: block.kind as 'vanilla',
        seed,
        score: oneClass ? 0.527 : 0.6 + seed / 100 + (block.kind === 'vanilla' ? 0 : 0.02),
        overrides: { strategy: block, 'training.seed': seed },
        trainable: block.kind === 'child-tuning-d' ? 0.3 : 1,
        predicted: oneClass ? { entailment: 0, not_entailment: 277 } : { entailment: 130, not_entailment: 147 },
        confusion: oneClass
          ? [
              [0, 131],
              [0, 146],
            ]
          : [
              [100, 31],
              [30, 116],
            ],
        majority: 0.527,
      });
    }
  const out = path.join(root, 'out');
  let run: Awaited<ReturnType<typeof cli>>;
  let report: any;
  const file = (f: string) => fs.readFileSync(path.join(out, f), 'utf8');
  before(async () => {
    run = await cli(['report', path.join(root, 'sweep'), '--out', out]);
    assert.equal(run.code, 0, run.err);
    report = readJson(path.join(out, 'report.json'));
  });

  test('rows are named by strategy, never by the block as JSON, and each is compared with vanilla', () => {
    assert.deepEqual(rowsOf(report), ['vanilla', 'child-tuning-d (p=0.3)', 'child-tuning-f (p=0.3)']);
    assert.deepEqual(
      report.significance.map((s: any) => [s.row, s.baseline, s.method]),
      [
        ['child-tuning-d (p=0.3)', 'vanilla', 'paired t'],
        ['child-tuning-f (p=0.3)', 'vanilla', 'paired t'],
      ],
    );
    for (const f of ['report.md', 'report.tex', 'report.csv', 'report.html'])
      assert.doesNotMatch(file(f), /strategy=|"kind"|&quot;kind/, `${f}: no JSON in row names`);
    assert.match(file('report.html'), /<th scope="row">child-tuning-d \(p=0\.3\)<\/th><td class="left">glue\/rte/);
    assert.doesNotMatch(file('report.html'), /No significance test/);
    const loss = fs.readFileSync(path.join(out, 'figures', 'loss-glue-rte.svg'), 'utf8');
    for (const row of rowsOf(report)) assert.ok(loss.includes(`>${row}<`), `${row} in the loss legend`);
  });

  test('a block with other options names them as dotted settings, and still finds its baseline', async () => {
    const dir = tmpProject();
    for (const [i, block] of [
      { kind: 'vanilla' },
      { kind: 'child-tuning-d', reserve_p: 0.3, fisher: { samples: 64 } },
    ].entries())
      for (const seed of [1, 2])
        fakeRun(path.join(dir, `t${i}-${seed}`), {
          task: 'glue/rte',
          strategy: block.kind as 'vanilla',
          seed,
          score: 0.6 + i / 50 + seed / 100,
          overrides: { strategy: block, 'training.seed': seed },
        });
    const r = await cli(['report', dir, '--out', path.join(dir, 'out')]);
    assert.equal(r.code, 0, r.err);
    const json = readJson(path.join(dir, 'out', 'report.json'));
    assert.deepEqual(rowsOf(json), ['vanilla', 'child-tuning-d (p=0.3) strategy.fisher.samples=64']);
    assert.equal(json.significance[0].baseline, 'vanilla');
  });

  test('the trainable share is a column in Markdown, HTML, LaTeX and CSV', () => {
    assert.deepEqual(
      report.table.rows.map((r: any) => r.trainable),
      [1, 0.3, 1],
    );
    assert.match(file('report.md'), /\| strategy \| glue\/rte \(accuracy\) \| trainable \|/);
    assert.match(file('report.md'), /\| child-tuning-d \(p=0\.3\) \| .* \| 30\.00% \|/);
    assert.match(file('report.html'), /<th>trainable<span class="sub">share of parameters<\/span><\/th>/);
    assert.match(file('report.html'), /<td>30\.00%<\/td><\/tr>/);
    assert.match(file('report.tex'), /Strategy & Mean \$\\pm\$ Std & Max & Trainable \\\\/);
    assert.match(file('report.tex'), /child-tuning-d \(p=0\.3\) & .* & 30\.00\\% \\\\/);
    assert.match(file('report.tex'), /\\begin\{tabular\}\{lrrr\}/);
    const csv = file('report.csv').trim().split('\n');
    assert.equal(csv[0], 'strategy,column,metric,mean,std,max,n,seeds,majority,single_class_runs,trainable');
    assert.match(
      csv.find((l) => l.startsWith('child-tuning-d'))!,
      /,0\.527,0,0\.3$/,
    );
  });

  test('the majority-class score is beside every score; a run that predicted one class is marked beside its row', () => {
    const f = report.table.rows.find((r: any) => r.kind === 'child-tuning-f').cells['glue/rte'];
    assert.equal(f.single_class_runs, 1);
    assert.ok(Math.abs(f.majority - 0.527) < 1e-12);
    assert.ok(report.table.rows.every((r: any) => r.cells['glue/rte'].majority !== null));
    const md = file('report.md');
    assert.equal((md.match(/, majority 52\.70\)/g) ?? []).length, 3);
    assert.match(md, /\| child-tuning-f \(p=0\.3\) \| [^|]*majority 52\.70\) ⚠ one class in 1 of 3 \|/);
    assert.match(md, /⚠: runs that predicted one class/);
    assert.match(
      file('report.html'),
      /⚠ one class in 1 of 3<\/span><span class="sub">max [\d.]+ · n=3 · majority 52\.70/,
    );
    assert.match(file('report.tex'), /\$\^\{\\dagger\}\$/);
    assert.match(file('report.tex'), /Majority class & 52\.70 & -- & -- \\\\/);
    const warning =
      /child-tuning-f \(p=0\.3\) on glue\/rte: 1 of 3 runs predicted one class for every evaluation example \('not_entailment'\)/;
    assert.match(run.err, warning);
    assert.ok(report.warnings.some((w: string) => warning.test(w)));
    assert.match(file('report.html'), /Check before use:.*1 of 3 runs predicted one class/s);
    const csv = file('report.csv').trim().split('\n');
    assert.match(
      csv.find((l) => l.startsWith('child-tuning-f'))!,
      /,0\.527,1,1$/,
      'single_class_runs in the CSV',
    );
  });

  test("each run's confusion matrix: gold rows, predicted columns (Markdown, HTML, report.json)", () => {
    const md = file('report.md');
    assert.equal((md.match(/^### \.\.\/sweep\/trial-\d{3}: /gm) ?? []).length, 9, 'one matrix per run');
    const oneClass =
      /### \.\.\/sweep\/trial-005: child-tuning-f on glue\/rte, seed 3\n\n\| gold \\ predicted \| entailment \| not_entailment \|\n\|---\|---:\|---:\|\n\| entailment \| 0 \| 131 \|\n\| not_entailment \| 0 \| 146 \|/;
    assert.match(md, oneClass);
    assert.match(
      file('report.html'),
      /<caption>\.\.\/sweep\/trial-005: child-tuning-f on glue\/rte, seed 3<\/caption>\n<tr><th>gold \\ predicted<\/th><th>entailment<\/th><th>not_entailment<\/th><\/tr>\n<tr><th scope="row">entailment<\/th><td>0<\/td><td>131<\/td><\/tr>/,
    );
    const f3 = report.confusion_matrices.find((c: any) => c.run === path.join('..', 'sweep', 'trial-005'));
    assert.deepEqual(f3, {
      run: path.join('..', 'sweep', 'trial-005'),
      task: 'glue/rte',
      strategy: 'child-tuning-f',
      seed: 3,
      labels: ['entailment', 'not_entailment'],
      matrix: [
        [0, 131],
        [0, 146],
      ],
    });
  });
});

test('a comparison with the baseline at another learning rate says so', async () => {
  const root = tmpProject();
  for (const seed of [1, 2, 3]) {
    fakeRun(path.join(root, `v${seed}`), {
      task: 'glue/rte',
      strategy: 'vanilla',
      seed,
      score: 0.6 + seed / 100,
      optimizerLr: 2e-5,
    });
    fakeRun(path.join(root, `d${seed}`), {
      task: 'glue/rte',
      strategy: 'child-tuning-d',
      seed,
      score: 0.62 + seed / 90,
      optimizerLr: 1e-4,
    });
    fakeRun(path.join(root, `f${seed}`), {
      task: 'glue/rte',
      strategy: 'child-tuning-f',
      seed,
      score: 0.61 + seed / 80,
      optimizerLr: 2e-5,
    });
  }
  const r = await cli(['report', root, '--out', path.join(root, 'out')]);
  assert.equal(r.code, 0, r.err);
  const sig = readJson(path.join(root, 'out', 'report.json')).significance;
  const d = sig.find((s: any) => s.row.startsWith('child-tuning-d'));
  assert.match(d.lr_note, /the learning rate differs from the baseline's \(0\.0001 vs 0\.00002\)/);
  assert.equal(sig.find((s: any) => s.row.startsWith('child-tuning-f')).lr_note, undefined, 'same learning rate');
  assert.match(
    r.out,
    /note: the learning rate differs from the baseline's \(0\.0001 vs 0\.00002\).*\(child-tuning-d \(p=0\.3\) on glue\/rte\)/,
  );
  assert.match(fs.readFileSync(path.join(root, 'out', 'report.html'), 'utf8'), /the learning rate differs/);
});

test('compare says what A and B are: strategy, settings, tasks, runs and seeds', async () => {
  const root = tmpProject();
  fakeRun(path.join(root, 'a'), { task: 'glue/rte', strategy: 'vanilla', seed: 1, score: 0.6 });
  for (const seed of [1, 2])
    fakeRun(path.join(root, 'b', `t${seed}`), {
      task: 'glue/rte',
      strategy: 'child-tuning-d',
      seed,
      score: 0.62,
      overrides: { 'training.lr': 1e-4, 'training.seed': seed },
    });
  const r = await cli(['compare', path.join(root, 'a'), path.join(root, 'b')]);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.includes(`A: ${path.join(root, 'a')}: vanilla on glue/rte (1 run, seed 1)`), r.out);
  assert.ok(
    r.out.includes(
      `B: ${path.join(root, 'b')}: child-tuning-d (p=0.3) training.lr=0.0001 on glue/rte (2 runs, seeds 1, 2)`,
    ),
    r.out,
  );
  assert.doesNotMatch(r.out, /\(1 runs\)/);
});

test('a results.json written before predictions were checked still reads, without majority or marks', async () => {
  const root = tmpProject();
  fakeRun(path.join(root, 'old'), { task: 'glue/rte', strategy: 'vanilla', seed: 1, score: 0.6 });
  const r = await cli(['report', root, '--format', 'json']);
  assert.equal(r.code, 0, r.err);
  const cell = JSON.parse(r.out).rows[0].cells['glue/rte'];
  assert.equal(cell.majority, null);
  assert.equal(cell.single_class_runs, 0);
});
