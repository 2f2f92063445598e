import type { Metric } from './task-spec.js';

/** Each metric's range as computed here: a value outside it (57.3, a percentage) was not written by a run. */
export const METRIC_RANGES: Readonly<Record<Metric, readonly [number, number]>> = {
  accuracy: [0, 1],
  f1: [0, 1],
  macro_f1: [0, 1],
  mcc: [-1, 1],
  pearson: [-1, 1],
  spearman: [-1, 1],
};

export const accuracy = (pred: ArrayLike<number>, gold: ArrayLike<number>) => {
  let hit = 0;
  for (let i = 0; i < gold.length; i++) if (pred[i] === gold[i]) hit++;
  return gold.length ? hit / gold.length : 0;
};

function confusion(pred: ArrayLike<number>, gold: ArrayLike<number>) {
  let tp = 0,
    fp = 0,
    fn = 0,
    tn = 0;
  for (let i = 0; i < gold.length; i++) {
    if (pred[i] === 1 && gold[i] === 1) tp++;
    else if (pred[i] === 1) fp++;
    else if (gold[i] === 1) fn++;
    else tn++;
  }
  return { tp, fp, fn, tn };
}

/** F1 of the positive class (label index 1), as GLUE reports for MRPC and QQP. */
export function f1(pred: ArrayLike<number>, gold: ArrayLike<number>) {
  const { tp, fp, fn } = confusion(pred, gold);
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/**
 * Counts of (gold, predicted) pairs: row g, column p holds the examples of class g predicted as p. A prediction
 * outside [0, classes) is a caller's bug, refused rather than dropped from the counts.
 */
export function confusionMatrix(pred: ArrayLike<number>, gold: ArrayLike<number>, classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < gold.length; i++) {
    const [g, p] = [gold[i], pred[i]];
    if (!(Number.isInteger(g) && Number.isInteger(p) && g >= 0 && p >= 0 && g < classes && p < classes))
      throw new RangeError(`confusionMatrix: class pair (${g}, ${p}) outside 0..${classes - 1}`);
    m[g][p]++;
  }
  return m;
}

/**
 * Macro-averaged F1 (scikit-learn's f1_score(average='macro')): the unweighted mean of each class's F1 over the
 * classes that occur in the gold labels or the predictions; a class with no true positives scores 0.
 */
export function macroF1(pred: ArrayLike<number>, gold: ArrayLike<number>) {
  let classes = 0;
  for (let i = 0; i < gold.length; i++) classes = Math.max(classes, gold[i] + 1, pred[i] + 1);
  const m = confusionMatrix(pred, gold, classes);
  let sum = 0,
    present = 0;
  for (let c = 0; c < classes; c++) {
    const tp = m[c][c];
    const goldCount = m[c].reduce((a, b) => a + b, 0);
    const predCount = m.reduce((a, row) => a + row[c], 0);
    if (goldCount + predCount === 0) continue;
    present++;
    sum += (2 * tp) / (goldCount + predCount);
  }
  return present ? sum / present : 0;
}

/** Matthews correlation (CoLA); 0 when a row or column of the confusion matrix is empty, as scikit-learn does. */
export function mcc(pred: ArrayLike<number>, gold: ArrayLike<number>) {
  const { tp, fp, fn, tn } = confusion(pred, gold);
  const denom = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  return denom === 0 ? 0 : (tp * tn - fp * fn) / denom;
}

export function pearson(x: ArrayLike<number>, y: ArrayLike<number>) {
  const n = x.length;
  let mx = 0,
    my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0,
    sxx = 0,
    syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx,
      dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}

/** Ranks with ties given their average rank. */
export function ranks(v: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[a] - v[b]);
  const r = new Float64Array(v.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]] === v[idx[i]]) j++;
    for (let k = i; k <= j; k++) r[idx[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

export const spearman = (x: ArrayLike<number>, y: ArrayLike<number>) => pearson(ranks(x), ranks(y));

/** Computes the named metrics; predictions are class indices, or scores for regression. */
export function computeMetrics(
  metrics: readonly Metric[],
  pred: ArrayLike<number>,
  gold: ArrayLike<number>,
): Record<string, number> {
  const fns: Record<Metric, (p: ArrayLike<number>, g: ArrayLike<number>) => number> = {
    accuracy,
    f1,
    macro_f1: macroF1,
    mcc,
    pearson,
    spearman,
  };
  return Object.fromEntries(metrics.map((m) => [m, fns[m](pred, gold)]));
}
