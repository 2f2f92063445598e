import fs from 'node:fs';

/**
 * The start time of process `pid` on this host (field 22 of /proc/PID/stat, clock ticks since boot): what tells a
 * reused pid from the process a lock recorded. Null where there is no such process or no /proc.
 */
export function startTimeOf(pid: number): string | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces and parentheses); starttime is field 22.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

/**
 * Whether the process `pid` of this host that started at `start` has ended: no such process, or the pid now names
 * a process that started at another time. `start` null: unknown, so only the first test applies.
 */
export function processEnded(pid: number, start: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return true;
  }
  return start !== null && startTimeOf(pid) !== start;
}
