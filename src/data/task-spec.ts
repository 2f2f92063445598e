/**
 * The shape of a task and of the dataset block that names one. Defined here, in the data layer, so that data never
 * imports the recipe: the recipe's generated Dataset type fits DatasetBlock, and test/tasks.test.ts checks that
 * BuiltinTask lists the schema's tasks.
 */
export type Metric = 'accuracy' | 'f1' | 'macro_f1' | 'mcc' | 'pearson' | 'spearman';
export type FileFormat = 'tsv' | 'csv' | 'jsonl' | 'parquet';

/** Where a field lives in a row: a header name or a 0-based column index. */
export type Field = string | number;

export type BuiltinTask =
  | 'glue/cola'
  | 'glue/sst-2'
  | 'glue/mrpc'
  | 'glue/sts-b'
  | 'glue/qqp'
  | 'glue/mnli'
  | 'glue/mnli-mm'
  | 'glue/qnli'
  | 'glue/rte'
  | 'glue/wnli'
  | 'snli'
  | 'scitail'
  | 'sick';

/** What the data layer reads of a recipe's dataset block. */
export interface DatasetBlock {
  task: BuiltinTask | 'custom';
  dir?: string;
  files?: Record<string, string>;
  /** One file holding every split, divided by `split`. */
  file?: string;
  split?: { field?: Field; values?: Record<string, string>; ratio?: Record<string, number>; seed?: number };
  format?: FileFormat;
  header?: boolean;
  text_fields?: Field[];
  label_field?: Field;
  labels?: string[];
  regression?: boolean;
}

/** How one task's files look as distributed, and what it predicts. */
export interface TaskSpec {
  id: DatasetBlock['task'];
  /** The files' format; undefined: inferred from each file's extension. */
  format?: FileFormat;
  header: boolean;
  /** Split name to file name inside the task directory. */
  files: Record<string, string>;
  text: [Field] | [Field, Field];
  label: Field;
  /** Class names in index order; null for regression. */
  labels: string[] | null;
  metrics: Metric[];
  /** Label values that mark an unlabelled row, dropped silently and counted (SNLI's '-'). */
  unlabelled?: string[];
  /** For files that hold every split (SICK): the column naming each row's split, and each split's value. */
  splitColumn?: { field: Field; values: Record<string, string> };
  /** For one file dealt into splits at random: each split's share of the rows, and the seed of the deal. */
  splitRatio?: { shares: Record<string, number>; seed: number };
  /** Scores outside this range are bad rows (STS-B's are 0 to 5). */
  scoreRange?: [number, number];
  /** datasets' ClassLabel names (index order = labels' order), accepted as labels too; integer labels index them. */
  classNames?: string[];
  /** Set when the files come from the hub cache (a built-in task named without a dir). */
  fromHub?: { task: string; repo: string; cached: boolean };
}
