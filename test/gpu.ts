import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * SwiftShader, the software Vulkan device in Debian's chromium, as the tests' GPU: its driver manifest, or
 * undefined where chromium is not installed (CI installs it: .ci/run).
 */
export function swiftshaderIcd(): string | undefined {
  const known = '/usr/lib/chromium/vk_swiftshader_icd.json';
  if (fs.existsSync(known)) return known;
  try {
    return execFileSync('dpkg', ['-L', 'chromium-common'], { encoding: 'utf8' })
      .split('\n')
      .find((f) => f.endsWith('vk_swiftshader_icd.json'));
  } catch {
    return undefined;
  }
}

/**
 * The environment Dawn needs to find SwiftShader: its manifest and a writable runtime directory. Set on this
 * process (before Dawn is first asked for an adapter) and returned for child processes.
 */
export function useSwiftshader(icd: string): Record<string, string> {
  const env = {
    VK_ICD_FILENAMES: icd,
    XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'xdg-')),
  };
  Object.assign(process.env, env);
  return env;
}

/** Why the GPU tests cannot run here, or undefined; in CI a missing SwiftShader fails instead of skipping. */
export function gpuSkip(): string | undefined {
  if (swiftshaderIcd()) return undefined;
  if (process.env.CI) throw new Error("SwiftShader is missing: .ci/run installs Debian's chromium for the GPU tests");
  return 'SwiftShader not installed (apt-get install chromium libvulkan1)';
}

/**
 * While Dawn has GPU work pending it polls for its completion with setImmediate, a busy loop on one CPU. On
 * SwiftShader the GPU is these same CPUs (two in CI), so the poll takes one of them from it. Polling by a 0 ms timer
 * instead leaves SwiftShader both (a BERT-tiny step on it: 2.5 s to 1.4 s); the order of work, and so every result,
 * is unchanged. Returns what puts setImmediate back.
 */
export function pollByTimer(): () => void {
  const immediate = globalThis.setImmediate;
  globalThis.setImmediate = ((fn: (...args: unknown[]) => void, ...args: unknown[]) =>
    setTimeout(fn, 0, ...args)) as unknown as typeof setImmediate;
  return () => {
    globalThis.setImmediate = immediate;
  };
}
