import os from 'node:os';
import { formatBytes } from './estimate.js';
import type { MemoryEstimate, Stage } from './stages.js';

/** Memory this process may use: the machine's, or less where a cgroup (container, Slurm job) limits it. */
export function availableMemory(): number {
  const limit = process.constrainedMemory?.() ?? 0;
  return limit > 0 ? Math.min(limit, os.totalmem()) : os.totalmem();
}

const parts = (m: MemoryEstimate) =>
  Object.entries(m)
    .filter(([k, v]) => k !== 'total' && v > 0)
    .map(([k, v]) => `${k} ${formatBytes(v)}`)
    .join(', ');

/** The limits of a GPU adapter that bound a stage (WebGPU tells no total memory, only these). */
export interface DeviceLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** Why a stage cannot run on this GPU (its largest tensor past one buffer binding), or undefined when it can. */
export function overDevice(stage: Stage, limits: DeviceLimits): string | undefined {
  const d = stage.device;
  const limit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  if (!d || d.largest_buffer <= limit) return undefined;
  return `the ${stage.kind} stage's largest tensor needs ${formatBytes(d.largest_buffer)} in one GPU buffer, but this adapter binds at most ${formatBytes(limit)}`;
}

/** Why a stage's memory estimate does not fit this machine (with the figures), or undefined when it does. */
export function overBudget(stage: Stage, available = availableMemory()): string | undefined {
  const m = stage.memory;
  if (!m || m.total <= available) return undefined;
  return `the ${stage.kind} stage needs about ${formatBytes(m.total)} (${parts(m)}) but this machine has ${formatBytes(available)}`;
}
