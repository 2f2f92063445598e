/** The dataset block of the starter: a built-in task. */
const BUILTIN_DATASET = `dataset:
  task: glue/rte                          # or glue/cola, glue/mrpc, glue/sts-b, ..., or custom
  dir: \${CHILDTUNE_DATA}/glue/RTE          # the task's train.tsv and dev.tsv as distributed
  subsample: { size: 1000, seed: 0 }      # low-resource setting of the paper; remove for full data

`;

/** The dataset block of `init --custom`: your own data, one file divided into splits. */
const CUSTOM_DATASET = `dataset:
  task: custom
  file: ./data.tsv                        # one file holding every split: .tsv, .csv, .jsonl or .parquet
  split:                                  # which rows are which split:
    field: split                          #   the column that names each row's split,
    values: { train: train, dev: dev }    #   and the value that marks each split's rows
    # or, when no column says it, a seeded random deal (the same rows on every machine):
    # ratio: { train: 0.8, dev: 0.2 }
    # seed: 1
  # Instead of file and split, one file per split: files: { train: train.tsv, dev: dev.tsv }
  text_fields: [sentence1, sentence2]     # one or two text columns (0-based indices when header: false)
  label_field: label
  labels: [negative, positive]            # the label set, in class-index order; or regression: true
  on_bad_row: error                       # or skip: count and leave out malformed rows

`;

/** The recipe `childtune init` writes: every section, commented, with the paper's defaults. */
const starter = (dataset: string) => `# A childtune recipe: fine-tune a pretrained encoder with Child-Tuning.
# Check it with \`childtune validate recipe.yaml\`, see the stages with \`childtune plan recipe.yaml\`,
# run it with \`childtune run recipe.yaml\`. \${VAR} reads an environment variable:
# CHILDTUNE_MODEL names the model (a model directory or hub id), CHILDTUNE_DATA the data root (holding glue/RTE/...).
# Paths: a relative path is relative to this file and must stay inside the project (the nearest directory with
# .git or .childtune-root); an absolute path, or one starting with \${VAR}, is your choice and may point anywhere.
# A base recipe named by \`extends:\` must lie inside the project either way.
version: 1
name: my-experiment

model:
  path: \${CHILDTUNE_MODEL}                 # a directory with config.json, model.safetensors, vocab.txt
  max_seq_length: 128

${dataset}strategy:
  kind: child-tuning-d                    # vanilla | child-tuning-f | child-tuning-d
  reserve_p: 0.3                          # fraction of the gradient kept (the child network's size)
  fisher:
    estimator: batch                      # batch (official code) | per-example (the paper's formula)

training:
  optimizer: { lr: 2.0e-5, weight_decay: 0.01 }
  schedule: { warmup_ratio: 0.1 }
  epochs: 3
  batch_size: 16
  seed: 42

evaluation:
  checkpoint: last                        # or best (by the task's first metric)

# sweep:
#   grid: { training.optimizer.lr: [1.0e-5, 2.0e-5] }
#   seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
# or each strategy at its own learning rate, written once:
# sweep:
#   grid: { strategy: [{ kind: vanilla }, { kind: child-tuning-d, reserve_p: 0.3 }] }
#   per_strategy:
#     vanilla: { training.optimizer.lr: [2.0e-5] }
#     child-tuning-d: { training.optimizer.lr: [4.0e-5] }
#   seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]

runtime:
  backend: auto                           # tensorflow-gpu > tensorflow > wasm > cpu, whichever is installed
  output_dir: runs
`;

export const STARTER_RECIPE = starter(BUILTIN_DATASET);
/** `childtune init --custom`: the same, reading a data set of your own. */
export const CUSTOM_STARTER_RECIPE = starter(CUSTOM_DATASET);
