import { fisherRunner } from '../fisher-stage.js';
import type { StageRunners } from '../walk.js';
import { loadDatasetRunner, subsampleRunner, tokenizeRunner } from './data.js';
import { evaluateRunner } from './evaluate.js';
import { loadModelRunner } from './load-model.js';
import { reportRunner } from './report.js';
import { trainRunner } from './train.js';
import { transferRunner } from './transfer.js';

/** One runner per stage kind: the only place the walk learns what a kind of stage does. */
export const STAGE_RUNNERS: StageRunners = {
  'load-model': loadModelRunner,
  'load-dataset': loadDatasetRunner,
  subsample: subsampleRunner,
  tokenize: tokenizeRunner,
  fisher: fisherRunner,
  train: trainRunner,
  evaluate: evaluateRunner,
  'transfer-eval': transferRunner,
  report: reportRunner,
};
