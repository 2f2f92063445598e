import { overBudget, overDevice, type DeviceLimits } from './budget.js';
import { formatBytes } from './estimate.js';
import type { MemoryEstimate, Plan, Work } from './stages.js';

/** The plan as text: stages in dependency order, shared stages once, with hash, cache state, work and memory. */
export function formatPlan(plan: Plan, device?: DeviceLimits & { label: string }): string {
  const lines: string[] = [];
  const n = plan.trials.length;
  lines.push(`plan: ${plan.stages.length} stages, ${n} trial${n === 1 ? '' : 's'}`);
  if (device) lines.push(`device: ${device.label}`);
  for (const s of plan.stages) {
    const state = s.cached === null ? '' : s.cached ? ' [cached]' : ' [to run]';
    const shared =
      n > 1 && s.kind !== 'report' ? (s.trials.length === n ? ' (all trials)' : ` (trials ${s.trials.join(',')})`) : '';
    lines.push(`  ${s.kind.padEnd(13)} ${s.hash.slice(0, 12)}  ${s.label}${state}${shared}`);
    if (s.deps.length)
      lines.push(`${' '.repeat(30)}after ${s.deps.map((d) => d.replace(/:(\w{6})\w*/, ':$1')).join(', ')}`);
    if (s.work) lines.push(`${' '.repeat(30)}work: ${workOf(s.work)}`);
    if (s.work?.evaluations !== undefined) lines.push(`${' '.repeat(30)}evaluations: ${evaluationsOf(s.work)}`);
    if (s.trainable) {
      const count = (t: { parameters: number; share: number }) =>
        `${t.parameters.toLocaleString('en-US')} parameters (${(100 * t.share).toFixed(2)}%)`;
      const effective = s.trainable.effective && `; effective (child network): ${count(s.trainable.effective)}`;
      lines.push(`${' '.repeat(30)}trainable: ${count(s.trainable)}${effective ?? ''}`);
    }
    if (s.memory) {
      const m = s.memory;
      lines.push(`${' '.repeat(30)}memory: ${formatBytes(m.total)} (${partsOf(m)})`);
      const over = overBudget(s);
      if (over) lines.push(`${' '.repeat(30)}warning: ${over}; \`run\` will refuse it`);
    }
    if (s.kernels) lines.push(`${' '.repeat(30)}matrix kernels: ${s.kernels}`);
    if (s.device) {
      const d = s.device;
      lines.push(
        `${' '.repeat(30)}gpu memory: ${formatBytes(d.total)} (${partsOf(d)}; largest buffer ${formatBytes(d.largest_buffer)})`,
      );
      const over = device && overDevice(s, device);
      if (over) lines.push(`${' '.repeat(30)}warning: ${over}; \`run\` will refuse it`);
    }
  }
  if (n > 1) {
    lines.push('trials:');
    for (const t of plan.trials)
      lines.push(
        `  ${String(t.index).padStart(3)}  ${
          Object.entries(t.overrides)
            .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
            .join(' ') || '(base)'
        }  ${t.recipeHash.slice(0, 12)}`,
      );
  }
  return lines.join('\n');
}

/** A memory estimate's parts, the empty ones left out. */
function partsOf(m: Omit<MemoryEstimate, 'save' | 'runtime'>): string {
  return [
    `weights ${formatBytes(m.weights)}`,
    `grads ${formatBytes(m.gradients)}`,
    m.adam && `adam ${formatBytes(m.adam)}`,
    m.fisher && `fisher ${formatBytes(m.fisher)}`,
    m.mask && `mask ${formatBytes(m.mask)}`,
    m.anchor && `pretrained anchor ${formatBytes(m.anchor)}`,
    `activations ${formatBytes(m.activations)}`,
  ]
    .filter(Boolean)
    .join(', ');
}

/** '48 examples x 3 epochs = 18 steps', and how max_steps and accumulation make the steps. */
function workOf(w: Work): string {
  const steps = w.max_steps
    ? `${w.examples} examples, ${w.steps} steps (training.max_steps: ${+w.epochs.toFixed(2)} epochs)`
    : `${w.examples} examples x ${w.epochs} epoch${w.epochs === 1 ? '' : 's'} = ${w.steps} steps`;
  return `${steps}${w.accumulate ? `, ${w.accumulate} batches accumulated per step` : ''}`;
}

/**
 * '6 (every 3 steps and after the last); also test': how often the training evaluates, and what besides; with
 * early stopping, the count is the most there can be.
 */
function evaluationsOf(w: Work): string {
  const when = w.every_steps ? `every ${w.every_steps} steps and after the last` : 'after each epoch';
  const stop = w.patience ? `, early stopping after ${w.patience} without improvement` : '';
  return `${w.patience ? 'at most ' : ''}${w.evaluations} (${when}${stop})${w.splits ? `; also ${w.splits.join(', ')}` : ''}`;
}
