import type { DenseRole } from '../../engine/modules/families.js';
import type { ModifierFactory } from '../../engine/modules/modifier.js';
import { adamwStep, learningRate, type AdamWSettings } from '../../engine/optimizer.js';
import { defineStrategy, kindReport } from '../definition.js';
import { STREAMS } from '../strategy.js';
import { diffPruningModifier } from './modifier.js';
import { LOG_ALPHA, TENSOR_LOG_ALPHA } from './gated-diff.js';
import { projectDiffs } from './project.js';
import { diffPruningSave } from './save.js';

/** The reference's three stages in one run: stage one's steps, then the fixed-mask stage's (project.ts). */
interface Stages {
  /** The optimizer step at whose end the projection happens (stage one's last). */
  projectAt: number;
  total: number;
  lr: number;
  fixmaskLr: number;
  warmupRatio: number;
  schedule: 'linear' | 'constant';
  weightDecay: number;
  targetSparsity: number;
}

/** Which tensors are gate parameters (stepped by their own AdamW), its learning rate, and the stages if any. */
interface PreparedDiff {
  gates: boolean[];
  lr: number;
  stages?: Stages;
}

/** A stage's learning rate at its `step`-th step (from 1) of `steps`, warmed up and scheduled as the run's. */
const stageLr = (s: Stages, peak: number, step: number, steps: number) =>
  learningRate(step - 1, steps, peak, Math.ceil(s.warmupRatio * steps), s.schedule);

/** The differences' and the classifier's learning rate at optimizer step `step`: stage one's, or the fixed-mask stage's. */
function stagesLr(s: Stages, step: number) {
  return step <= s.projectAt
    ? stageLr(s, s.lr, step, s.projectAt)
    : stageLr(s, s.fixmaskLr, step - s.projectAt, s.total - s.projectAt);
}

/**
 * Diff pruning (Guo et al., 2021, after dguo98/DiffPruning run_glue_diffpruning.py): frozen pretrained tensors
 * plus hard-concrete-gated differences (gated-diff.ts), the L0 penalty inside the layers' backward. The run's
 * AdamW updates the differences and the classifier; the gates' log_alpha have their own AdamW, at a constant
 * `alpha_lr` without weight decay, as the reference's alpha_optimizer. Saving merges the differences (save.ts).
 * With `projection_at`, the reference's later stages follow in the same run: stage one's optimizer steps
 * decay over their own count, at the end of the last the merged difference is projected to `target_sparsity`
 * (project.ts), and the steps after it train under that fixed mask with fresh moments at `fixmask_lr`, the gates
 * no longer stepped: the reference's run_glue_mag.py and run_glue_fixmask_finetune.py.
 */
export const diffPruningDefinition = defineStrategy({
  kind: 'diff-pruning',
  modifiers: (o) => [
    diffPruningModifier({
      roles: o.gated_tensors === 'all' ? 'all' : (o.target_modules as DenseRole[]),
      lambda: o.lambda,
      alphaInit: o.alpha_init,
      stream: STREAMS.gateNoise,
    }),
  ],
  modifierKinds: [diffPruningModifier as ModifierFactory],
  prepare: ({ specs, options, recipe, steps }): PreparedDiff => {
    const gates = specs.map((s) => s.name.endsWith(LOG_ALPHA) || s.name.endsWith(TENSOR_LOG_ALPHA));
    if (options.projection_at === undefined || !steps) return { gates, lr: options.alpha_lr };
    const projectAt = Math.round(options.projection_at * steps.total);
    if (projectAt < 1 || projectAt >= steps.total)
      throw new Error(
        `diff pruning: projection_at ${options.projection_at} of the run's ${steps.total} optimizer steps is step ${projectAt}; ` +
          'each stage needs at least one step (a longer run, or projection_at nearer 0.5)',
      );
    const t = recipe.training;
    return {
      gates,
      lr: options.alpha_lr,
      stages: {
        projectAt,
        total: steps.total,
        lr: t.optimizer.lr,
        fixmaskLr: options.fixmask_lr,
        warmupRatio: t.schedule.warmup_ratio,
        schedule: t.schedule.kind,
        weightDecay: t.optimizer.weight_decay,
        targetSparsity: options.target_sparsity,
      },
    };
  },
  learningRate: ({ stages }: PreparedDiff, step) => (stages ? stagesLr(stages, step) : undefined),
  hooks: ({ gates, lr, stages }: PreparedDiff) => ({
    kind: 'diff-pruning',
    ownStep: (index, step, adam) => {
      const alpha: AdamWSettings = { lr, betas: [adam.b1, adam.b2], eps: adam.eps, weightDecay: 0 };
      if (!stages) return gates[index] ? adamwStep(alpha, step, lr) : undefined;
      const run: AdamWSettings = { ...alpha, weightDecay: stages.weightDecay };
      // In the fixed-mask stage, its own optimizer from its first step; the gates, fixed, are not stepped.
      const own = step > stages.projectAt ? step - stages.projectAt : step;
      if (gates[index]) return adamwStep(alpha, own, step > stages.projectAt ? 0 : lr);
      return adamwStep(run, own, stagesLr(stages, step));
    },
  }),
  changeStep: ({ stages }: PreparedDiff) => stages?.projectAt,
  changeAt: ({ stages }: PreparedDiff, state) => {
    if (!stages) return false;
    projectDiffs(state, stages.targetSparsity);
    return true;
  },
  report: (o) => {
    const r = kindReport(o);
    const own = {
      diff_lambda: o.lambda,
      diff_alpha_init: o.alpha_init,
      diff_alpha_lr: o.alpha_lr,
      ...(o.projection_at !== undefined && {
        diff_projection_at: o.projection_at,
        diff_target_sparsity: o.target_sparsity,
        diff_fixmask_lr: o.fixmask_lr,
      }),
    };
    return { results: { ...r.results, ...own }, maskStats: { ...r.maskStats, ...own } };
  },
  save: diffPruningSave,
});
