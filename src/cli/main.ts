import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { compilePlan, strategyChecks } from '../plan/compiler.js';
import { deviceLabel, findAdapter } from '../engine/webgpu/device.js';
import { formatPlan } from '../plan/format.js';
import { loadRecipe } from '../recipe/index.js';
import { hasErrors, type Diagnostic } from '../recipe/diagnostics.js';
import { formatDiagnostics } from '../recipe/format.js';
import { printError, UserError } from './errors.js';
import { bundledRecipes, recipeListing, REPO_ROOT, resolveRecipeArgument } from './recipes.js';
import { CUSTOM_STARTER_RECIPE, STARTER_RECIPE } from './starter.js';

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error). Never prints a stack trace unless --debug. */
export async function main(
  argv: string[],
  io: Io = { out: (t) => process.stdout.write(t + '\n'), err: (t) => process.stderr.write(t + '\n') },
): Promise<number> {
  const debug = argv.includes('--debug');
  let code = 0;
  const program = new Command('childtune')
    .description('Declarative, reproducible Child-Tuning fine-tuning experiments')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--debug', 'show stack traces for errors')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showSuggestionAfterError(true);

  const recipeOptions = (cmd: Command, argument = '<recipe>', description = 'recipe YAML file') =>
    cmd
      .argument(argument, description)
      .option('--set <path=value>', 'override a recipe field (repeatable)', collect, [])
      .option('--allow-path <dir>', 'let recipe paths point into this directory too (repeatable)', collect, [])
      .option('--json', 'machine-readable output');

  const load = (file: string, opts: { set: string[]; allowPath: string[] }) =>
    loadRecipe(file, { sets: opts.set, allowedRoots: opts.allowPath });
  /** A recipe file, or a bundled recipe by name (whose runs then go under the working directory). */
  const recipeFile = (arg: string, opts: { set: string[] }) => {
    const { file, overrides } = resolveRecipeArgument(arg);
    opts.set = [...overrides, ...opts.set];
    return file;
  };
  const printDiagnostics = (ds: Diagnostic[], json: boolean | undefined) => {
    if (json) io.out(JSON.stringify({ ok: !hasErrors(ds), diagnostics: ds }, null, 2));
    else if (ds.length) io.err(formatDiagnostics(ds));
  };

  recipeOptions(
    program.command('validate').description('check a recipe and print every problem at once'),
    '<recipe>',
    'recipe YAML file or bundled recipe name',
  ).action((arg: string, opts) => {
    const file = recipeFile(arg, opts);
    const loaded = load(file, opts);
    // The strategy's own checks too (the recipe layer knows no strategy), as the plan makes them.
    const diagnostics = loaded.recipe
      ? [...loaded.diagnostics, ...strategyChecks(loaded.recipe, loaded)]
      : loaded.diagnostics;
    printDiagnostics(diagnostics, opts.json);
    if (!opts.json && !hasErrors(diagnostics)) io.out(`${arg}: ok`);
    code = hasErrors(diagnostics) ? 1 : 0;
  });

  recipeOptions(
    program.command('plan').description('compile a recipe into its stage DAG with hashes, cache state and estimates'),
    '<recipe>',
    'recipe YAML file or bundled recipe name',
  ).action(async (arg: string, opts) => {
    const file = recipeFile(arg, opts);
    const loaded = load(file, opts);
    const compiled = compilePlan(loaded, path.resolve(file));
    if (!compiled.plan) {
      printDiagnostics(compiled.diagnostics, opts.json);
      code = 1;
      return;
    }
    const device = await planDevice(loaded.recipe?.runtime?.backend);
    io.out(
      opts.json
        ? JSON.stringify(device ? { ...compiled.plan, device } : compiled.plan, null, 2)
        : formatPlan(compiled.plan, device),
    );
  });

  recipeOptions(
    program.command('run').description('validate, plan and execute a recipe (or continue one with --resume)'),
    '[recipe]',
    'recipe YAML file or bundled recipe name (optional with --resume)',
  )
    .option('--trial <k>', 'run only trial K of the recipe (or of a sweep lock file)', (v) => Number.parseInt(v, 10))
    .option('--resume <dir>', 'continue an interrupted run from its last checkpoint')
    .option('--force', 'resume even though the model or data files changed since the run started (logged)')
    .option('--quiet', 'no progress output')
    .action(async (file: string | undefined, opts) => {
      if (!file && !opts.resume)
        throw new UserError('run needs a recipe file, or --resume RUN_DIR', 'Example: childtune run quickstart', 2);
      const resolved = file && !file.endsWith('.lock.json') ? recipeFile(file, opts) : file;
      const quickstart = resolved && path.resolve(resolved) === path.join(REPO_ROOT, 'recipes', 'quickstart.yaml');
      const { runCommand } = await import('../run/command.js');
      code = await runCommand(resolved, { ...opts, nextSteps: quickstart ? quickstartNextSteps : undefined }, io);
    });

  recipeOptions(
    program
      .command('sweep')
      .description("run every trial of a recipe's sweep block under a lock file (resumable, or emitted for a cluster)"),
    '[recipe]',
    'recipe YAML file or bundled recipe name, with a sweep block',
  )
    .option('--resume <dir>', 'continue an interrupted sweep: finished trials are skipped, never renumbered')
    .addOption(
      new Option(
        '--emit <kind>',
        'write a cluster submission instead of running: a Slurm array script or a Kubernetes Indexed Job',
      ).choices(['slurm', 'k8s']),
    )
    .option('--prepare <lockfile>', 'run the shared stages (fisher masks) of a locked sweep once')
    .option('--force', 'resume trials even though the model or data files changed since they started (logged)')
    .option('--quiet', 'no progress output')
    .action(async (file: string | undefined, opts) => {
      if (!file && !opts.resume && !opts.prepare)
        throw new UserError(
          'sweep needs a recipe file, --resume SWEEP_DIR or --prepare LOCKFILE',
          'Example: childtune sweep paper/glue/rte',
          2,
        );
      const { sweepCommand } = await import('../run/sweep.js');
      code = await sweepCommand(file && recipeFile(file, opts), opts, io);
    });

  program
    .command('fetch')
    .description(
      "download a model (org/name[@revision]) or a built-in task's data set (glue/rte, snli, ...) into the Hugging Face hub cache",
    )
    .argument('<id>', 'model id or built-in task name')
    .option('--revision <rev>', 'branch, tag or commit of a model (default: main)')
    .action(async (id: string, opts: { revision?: string }) => {
      const { fetchCommand } = await import('./fetch.js');
      code = await fetchCommand(id, opts, io);
    });

  program
    .command('report')
    .description(
      "aggregate runs and sweeps into the paper's table, significance against a baseline, and figures (report.{md,tex,csv,json,html}, figures/*.svg|png)",
    )
    .argument('<dirs...>', 'run or sweep directories')
    .option('--out <dir>', 'where to write the report files (default: the first directory)')
    .addOption(
      new Option('--format <format>', 'how to print the table')
        .choices(['markdown', 'latex', 'csv', 'json'])
        .default('markdown'),
    )
    .option('--baseline <kind>', 'the strategy every other row is tested against (default: vanilla)')
    .option('--json', 'print the table as JSON (same as --format json)')
    .action(async (dirs: string[], opts) => {
      const { reportCommand } = await import('../run/report.js');
      code = await reportCommand(dirs, opts, io);
    });

  program
    .command('predict')
    .description(
      'predict every row of a data file with a fine-tuned model: one row per input row with the class and its probabilities (scored where the file has gold labels), or a GLUE submission file',
    )
    .argument('<model>', 'a run directory (its recipe says the task and text fields) or a saved model directory')
    .argument('<file>', "tsv, csv, jsonl or parquet file with the task's text fields")
    .option(
      '--out <file>',
      'where to write the predictions, - for standard output (default: NAME.predictions.tsv in the working directory)',
    )
    .option(
      '--glue <dir>',
      "write the GLUE server's submission file for this test file (RTE.tsv, MNLI-m.tsv, ...) into DIR",
    )
    .option('--task <task>', 'the built-in task of a model directory (glue/rte, snli, ...); a run names its own')
    .option('--text-fields <a[,b]>', "the file's text fields (header names or 0-based columns), if not the task's")
    .option('--label-field <field>', "the file's gold label field, if not the task's")
    .addOption(
      new Option('--format <format>', 'the file format, if not its extension').choices([
        'tsv',
        'csv',
        'jsonl',
        'parquet',
      ]),
    )
    .option('--header', 'the tsv or csv file starts with a header row')
    .option('--no-header', 'the tsv or csv file has no header row')
    .option(
      '--max-length <n>',
      "truncate to this many tokens (default: the run's max_seq_length, else 128)",
      positiveInt,
    )
    .option(
      '--batch-size <n>',
      "examples per forward pass (default: the run's evaluation batch size, else 32)",
      positiveInt,
    )
    .addOption(
      new Option('--backend <name>', "default: the run's backend, else auto").choices([
        'auto',
        'wasm',
        'cpu',
        'tensorflow',
        'tensorflow-gpu',
        'webgpu',
      ]),
    )
    .option('--threads <n>', "worker threads (default: the run's)", positiveInt)
    .option('--json', 'print a machine-readable summary (rows, files written, metrics)')
    .action(async (source: string, file: string, opts) => {
      const { predictCommand } = await import('../run/predict.js');
      code = await predictCommand(source, file, opts, io);
    });

  program
    .command('compare')
    .description('per-metric difference between two runs or sweeps')
    .argument('<a>', 'run or sweep directory')
    .argument('<b>', 'run or sweep directory')
    .action(async (a: string, b: string) => {
      const { compareCommand } = await import('../run/report.js');
      code = compareCommand(a, b, io);
    });

  program
    .command('init')
    .description('write a commented starter recipe')
    .argument('[file]', 'where to write it (- for standard output)', 'recipe.yaml')
    .option('--force', 'overwrite an existing file')
    .option('--custom', 'read your own data (one file divided into splits by a column or a seeded ratio)')
    .action((file: string, opts: { force?: boolean; custom?: boolean }) => {
      const text = opts.custom ? CUSTOM_STARTER_RECIPE : STARTER_RECIPE;
      if (file === '-') return io.out(text);
      if (fs.existsSync(file) && !opts.force)
        throw new UserError(`${file} already exists`, 'Pass --force to overwrite it, or name another file.');
      fs.writeFileSync(file, text);
      io.out(`wrote ${file}; check it with: childtune validate ${file}`);
    });

  program
    .command('recipes')
    .description('list the bundled recipes (run, validate, plan or sweep them by name from any directory)')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      const list = bundledRecipes();
      if (opts.json) return io.out(JSON.stringify(list, null, 2));
      io.out(recipeListing(list, process.stdout.columns || 100));
      io.out('\nRun one by name from any directory, e.g. childtune run quickstart (its runs go to ./runs).');
    });

  const model = program.command('model').description('model utilities');
  model
    .command('init')
    .description('write a randomly initialised checkpoint (Hugging Face layout)')
    .addOption(new Option('--family <family>').choices(['bert', 'roberta', 'electra']).default('bert'))
    .addOption(new Option('--size <size>').choices(['tiny', 'mini', 'small', 'base', 'large']).default('tiny'))
    .option('--vocab <file>', 'WordPiece vocabulary to use (default: a small generated one)')
    .option('--labels <n>', 'classifier labels', (v) => Number.parseInt(v, 10), 2)
    .option('--seed <n>', 'initialisation seed (0 to 4294967295)', seedOption, 0)
    .requiredOption('--out <dir>', 'output directory')
    .option('--force', 'overwrite a model already in the output directory')
    .action(async (opts) => {
      const { initModelCommand } = await import('../engine/model-init.js');
      io.out(initModelCommand(opts));
    });

  program
    .command('encode')
    .description('tokenize a text (pair) and print tokens, ids and the model outputs')
    .requiredOption('--model <dir>', 'model directory, or a hub id (org/name[@revision]) in the hub cache')
    .requiredOption('--text <a>', 'first text')
    .option('--pair <b>', 'second text')
    .option('--max-length <n>', 'truncate to this many tokens', (v) => Number.parseInt(v, 10), 128)
    .option('--backend <name>', 'auto, wasm, cpu, tensorflow, tensorflow-gpu', 'auto')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const { encodeCommand } = await import('../engine/encode.js');
      const { modifiersFrom } = await import('../strategies/registry.js');
      io.out(await encodeCommand({ ...opts, modifiersFrom }));
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    return printError(e, debug, io);
  }
}

/**
 * The GPU a plan would run on: on webgpu the adapter Dawn finds (or why there is none), on auto a hardware adapter
 * if there is one (auto never takes a software one). Undefined where no GPU is involved.
 */
async function planDevice(backend: string | undefined) {
  if (backend !== 'webgpu' && backend !== 'auto') return undefined;
  const found = await findAdapter();
  if ('missing' in found)
    return backend === 'webgpu'
      ? {
          label: `none: ${found.missing}; \`run\` will refuse it`,
          maxBufferSize: Infinity,
          maxStorageBufferBindingSize: Infinity,
        }
      : undefined;
  if (backend === 'auto' && found.info.software) return undefined;
  const label = `${deviceLabel(found.info)}${backend === 'auto' ? ' (runtime.backend auto takes webgpu here)' : ''}`;
  return { ...found.info, label };
}

/** A seed option: the random streams are seeded with 32 bits, so a larger seed would repeat a smaller one's model. */
function seedOption(value: string): number {
  const seed = Number(value);
  if (!/^\d+$/.test(value) || seed > 0xffffffff)
    throw new InvalidArgumentError(`${value} is not a 32-bit seed; give a whole number from 0 to 4294967295.`);
  return seed;
}

/** A whole number of at least 1 (a length, a batch size, a thread count). */
function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new InvalidArgumentError(`${value} is not a whole number of at least 1.`);
  return Number(value);
}

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** What the quickstart prints last: where to go from here (npx: the clone's own bin, not a global install). */
function quickstartNextSteps(dirs: string[]): string {
  const dir = path.relative(process.cwd(), dirs[0]) || '.';
  return [
    '',
    'Next steps:',
    "  the run as the paper's table (Markdown, CSV, HTML):",
    `    npx childtune report ${dir}`,
    '  loss, learning rate and accuracy curves:',
    `    tensorboard --logdir ${path.join(dir, 'tb')}`,
    '  a sweep, two child-network sizes with three seeds each:',
    "    npx childtune sweep quickstart --set 'sweep.grid={strategy.reserve_p: [0.1, 0.3]}' --set 'sweep.seeds=[1,2,3]'",
    '  the same recipe on a real model:',
    '    npx childtune fetch google-bert/bert-base-uncased && CHILDTUNE_MODEL=google-bert/bert-base-uncased npx childtune run quickstart',
    "  the paper's experiments, ready to run by name:",
    '    npx childtune recipes',
  ].join('\n');
}
