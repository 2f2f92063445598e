import * as tf from '@tensorflow/tfjs-core';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { ChildtuneError } from '../errors.js';
import type { WebgpuBackend } from './tfjs.js';

/** What ran a stage on the GPU: the adapter's own words, and the limits the device was created with. */
export interface DeviceInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation of WebGPU (SwiftShader, lavapipe, llvmpipe, WARP): never picked by `auto`. */
  software: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export class DeviceError extends ChildtuneError {
  constructor(message: string, hint?: string) {
    super('backend', message, { hint });
  }
}

/** How to get the GPU backend, for errors that say it is missing. */
export const installHint =
  'Install it with: npm install webgpu @tensorflow/tfjs-backend-webgpu@4.22.0 (Dawn for Node: Vulkan on Linux, Metal on macOS, D3D12 on Windows).';

/** Adapters that run on the CPU, by the words drivers put in their adapter info. */
const SOFTWARE = /swiftshader|lavapipe|llvmpipe|softpipe|microsoft basic render|\bwarp\b|\bcpu\b/i;

export const isSoftwareAdapter = (info: Pick<DeviceInfo, 'vendor' | 'architecture' | 'device' | 'description'>) =>
  SOFTWARE.test([info.vendor, info.architecture, info.device, info.description].join(' '));

/** A one-line name for logs, plans and reports: "nvidia ampere (NVIDIA GeForce RTX 3090)". */
export const deviceLabel = (d: DeviceInfo) =>
  `${[d.vendor, d.architecture].filter(Boolean).join(' ') || 'unknown adapter'}${d.description ? ` (${d.description})` : ''}${d.software ? ', a software adapter' : ''}`;

interface Dawn {
  create(options: string[]): GPU;
  globals: object;
}

let opened: { device: GPUDevice; info: DeviceInfo } | undefined;
let probe: Promise<{ adapter: GPUAdapter; info: DeviceInfo } | { missing: string }> | undefined;

function loadDawn(): Dawn | { missing: string } {
  try {
    return createRequire(import.meta.url)('webgpu') as Dawn;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      missing:
        code === 'MODULE_NOT_FOUND'
          ? 'the webgpu package (Dawn for Node) is not installed'
          : `the webgpu package failed to load: ${(e as Error).message.split('\n')[0]}`,
    };
  }
}

/** Where the Vulkan loader looks for drivers on Linux (its ICD manifests), besides VK_ICD_FILENAMES / VK_DRIVER_FILES. */
const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

/**
 * Why Dawn cannot find a Vulkan adapter on Linux, asked before Dawn is: without a driver manifest it would only print
 * the loader's warnings to the terminal. Undefined where there is one, and on macOS and Windows (Metal, D3D12).
 */
function vulkanDriver(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  const named = [process.env.VK_ICD_FILENAMES, process.env.VK_DRIVER_FILES].filter(Boolean).join(':');
  if (named)
    return named.split(':').some((f) => fs.existsSync(f)) ? undefined : `no Vulkan driver manifest at ${named}`;
  const found = ICD_DIRS.some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.endsWith('.json')));
  return found ? undefined : `no Vulkan driver is installed (no manifest in ${ICD_DIRS.join(', ')})`;
}

/**
 * The adapter Dawn finds (asked for once per process): its info, or why there is none. Reads no GPU memory, so
 * `plan` and `auto` may ask.
 */
export function findAdapter(): Promise<{ adapter: GPUAdapter; info: DeviceInfo } | { missing: string }> {
  probe ??= (async () => {
    const driver = vulkanDriver();
    if (driver) return { missing: driver };
    const dawn = loadDawn();
    if ('missing' in dawn) return dawn;
    // Dawn's classes (GPUBufferUsage, ...) are what tfjs's webgpu backend reads from the global scope.
    for (const [k, v] of Object.entries(dawn.globals)) (globalThis as Record<string, unknown>)[k] ??= v;
    const gpu = dawn.create([]);
    // tfjs's webgpu backend checks navigator.gpu (Node 20 has no navigator; 21 and later have one without gpu).
    const g = globalThis as { navigator?: object };
    if (!g.navigator) g.navigator = {};
    if (!('gpu' in g.navigator)) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter)
      return {
        missing:
          'Dawn found no WebGPU adapter (no GPU driver it can use: Vulkan on Linux, Metal on macOS, D3D12 on Windows)',
      };
    const a = adapter.info;
    const words = { vendor: a.vendor, architecture: a.architecture, device: a.device, description: a.description };
    const info: DeviceInfo = {
      ...words,
      software: isSoftwareAdapter(words),
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    };
    return { adapter, info };
  })();
  return probe;
}

/**
 * Opens the GPU and registers tfjs's webgpu backend on it, with the adapter's own limits (the defaults cap a
 * storage binding at 128 MiB, less than BERT-large's word embeddings). `allowSoftware`: a CPU adapter is only
 * taken when asked for by name (the tests' SwiftShader), never by `auto`.
 */
export async function openDevice(allowSoftware: boolean): Promise<{ info: DeviceInfo } | { missing: string }> {
  if (opened) return { info: opened.info };
  const found = await findAdapter();
  if ('missing' in found) return found;
  const { adapter, info } = found;
  if (info.software && !allowSoftware) return { missing: `the only adapter is ${deviceLabel(info)}` };
  let backendModule: { WebGPUBackend: new (device: GPUDevice, info?: GPUAdapterInfo) => tf.KernelBackend };
  try {
    backendModule = createRequire(import.meta.url)('@tensorflow/tfjs-backend-webgpu');
  } catch {
    return { missing: '@tensorflow/tfjs-backend-webgpu is not installed' };
  }
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  device.addEventListener('uncapturederror', (e) => {
    lastDeviceError = (e as GPUUncapturedErrorEvent).error.message;
  });
  opened = { device, info };
  // tfjs-backend-webgpu registers a factory of its own when navigator.gpu exists; ours runs on this device.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => deterministic(new backendModule.WebGPUBackend(device, adapter.info)));
  return { info };
}

/** tfjs's matrix-product programs by number (its MatMulProgramType); the tiled one is deterministic. */
const MATMUL_PACKED = 3;

/**
 * tfjs's webgpu backend as childtune runs it: every run's result independent of the order the GPU's threads run
 * in. For a product with a small output and a long sum (2,000 terms or more: a LoRA weight's gradient over a batch
 * of 16 x 128 tokens at hidden sizes to 512) tfjs would split the sum and add the parts with atomics, in whatever
 * order they finish, so reruns would differ; its other small-output programs sum through workgroup barriers,
 * which a CPU adapter (the tests' SwiftShader) emulates slowly (a BERT-tiny step of 4 x 16 tokens 3.3 s against
 * 1.6 s). So every product takes the tiled program, on every adapter, the one the tests run; and any other
 * program tfjs marks atomic is refused before it runs, as a bug, rather than trained through.
 */
function deterministic<B extends tf.KernelBackend>(created: B): B {
  tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', MATMUL_PACKED);
  const b = created as unknown as WebgpuBackend;
  const run = b.runWebGPUProgram.bind(b);
  b.runWebGPUProgram = (program, ...rest) => {
    if (program.atomic)
      throw new DeviceError(
        `tfjs's webgpu kernel ${program.constructor.name} adds with atomics, so its result would depend on the order the GPU runs it in`,
        'This is a bug in childtune: run with --debug and report it; runtime.backend: auto trains on the CPU meanwhile.',
      );
    return run(program, ...rest);
  };
  return created;
}

let lastDeviceError: string | undefined;

/** The open device (after openDevice succeeded). */
export function gpuDevice(): { device: GPUDevice; info: DeviceInfo } {
  if (!opened) throw new Error('the WebGPU device is not open');
  return opened;
}

/** Throws the device's last validation or memory error, if one happened since the last call (WebGPU reports them late). */
export function checkDeviceErrors(where: string) {
  if (lastDeviceError === undefined) return;
  const message = lastDeviceError;
  lastDeviceError = undefined;
  throw new DeviceError(
    `the GPU reported an error during ${where}: ${message}`,
    'This is a bug in childtune unless the device ran out of memory; run with --debug and report it.',
  );
}
