import type { GateConstants } from '../../engine/kernels.js';

/**
 * The reference's hard-concrete gate (dguo98/DiffPruning run_glue_diffpruning.py, concrete_stretched and its
 * arguments' defaults): temperature 1, stretched to [LOWER, UPPER] = [-1.5, 1.5] before the clamp to [0, 1].
 */
export const LOWER = -1.5;
export const UPPER = 1.5;
/** The reference clamps the uniform noise to [1e-4, 1 - 1e-4] (so the logistic noise stays within about 9.2). */
export const U_MIN = 0.0001;
export const U_MAX = 0.9999;

/** The reference's log_ratio, log(-LOWER / UPPER) (0 for its symmetric stretch): each element's L0 term is sigmoid(log_alpha - it). */
export const L0_SHIFT = Math.log(-LOWER / UPPER);

/** The engine's gate constants for L0 weight `lambda` (its l0Scale is exp(L0_SHIFT)). */
export const gateConstants = (lambda: number): GateConstants => ({
  lower: LOWER,
  upper: UPPER,
  l0Scale: -LOWER / UPPER,
  lambda,
  uMin: U_MIN,
  uMax: U_MAX,
});

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Test-time gates on the host, z = min(1, max(0, sigmoid(log_alpha) (UPPER - LOWER) + LOWER)): what a saved model merges. */
export function testGates(logAlpha: Float32Array): Float32Array {
  return logAlpha.map((a) => Math.min(1, Math.max(0, sigmoid(a) * (UPPER - LOWER) + LOWER)));
}

/** The L0 penalty's terms summed: sigmoid(log_alpha - L0_SHIFT) per gate (the reference's l0_pen). */
export function expectedL0(logAlpha: Float32Array): number {
  let total = 0;
  for (const a of logAlpha) total += sigmoid(a - L0_SHIFT);
  return total;
}
