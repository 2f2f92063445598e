import { taskSpecOf } from '../../data/tasks.js';
import type { Stage } from '../../plan/stages.js';
import type { PreparedSplit } from '../data.js';
import { evaluate } from '../evaluate.js';
import { linearProbe } from '../probe.js';
import type { StageRunner, TrialContext } from '../walk.js';
import type { Trained } from './train.js';

/** A transfer-eval stage's output: results.json's `transfer` entry, `domain/NAME` or `task/NAME`. */
export interface Transferred {
  key: string;
  metrics: Record<string, number>;
}

/** The recipe's transfer targets in the plan's order (domain, then task), each with its stage in the trial. */
export function transferTargets(ctx: TrialContext) {
  const { domain, task } = ctx.recipe.transfer;
  const targets = [
    ...domain.map((d) => ({ mode: 'domain' as const, name: d.name, domain: d })),
    ...task.map((t) => ({ mode: 'task' as const, name: t.name, task: t })),
  ];
  return targets.map((t, i) => ({ ...t, stage: ctx.trial.transfers[i] }));
}

const targetOf = (stage: Stage, ctx: TrialContext) => transferTargets(ctx).find((t) => t.stage === stage.id)!;

/** Domain transfer (evaluate on another data set through a label map) or task transfer (a frozen-encoder linear probe). */
export const transferRunner: StageRunner<Transferred> = {
  async run(stage, deps, ctx) {
    const [trained, data, evalData] = deps as [Trained, PreparedSplit, PreparedSplit | undefined];
    const { model, parallel, tokenizer } = trained.loaded;
    const { recipe, report } = ctx;
    const target = targetOf(stage, ctx);
    if (target.mode === 'domain') {
      const d = target.domain;
      const src = taskSpecOf(recipe.dataset).labels!;
      const dst = data.spec.labels!;
      const map = d.label_map ? (p: number) => dst.indexOf(d.label_map![src[p]]) : undefined;
      const metrics = await evaluate(
        parallel,
        model.numLabels,
        data,
        ['accuracy'],
        recipe.evaluation.batch_size,
        tokenizer.padId,
        map,
      );
      report.log(`transfer ${d.name}: accuracy ${metrics.accuracy.toFixed(4)}`);
      return { key: `domain/${d.name}`, metrics };
    }
    const k = target.task;
    const metrics = await linearProbe(
      parallel,
      model.config.hiddenSize,
      data,
      evalData!,
      k.training,
      tokenizer.padId,
      (k.dataset.task === 'custom' ? undefined : taskSpecOf(k.dataset).metrics) ?? ['accuracy'],
    );
    report.log(
      `transfer ${k.name}: ${Object.entries(metrics)
        .map(([m, v]) => `${m} ${v.toFixed(4)}`)
        .join(', ')}`,
    );
    return { key: `task/${k.name}`, metrics };
  },
};
