import * as tf from '@tensorflow/tfjs-core';

/**
 * The parts of tfjs's webgpu backend (4.22) that childtune's own kernels use: a tensor's GPU buffer, custom
 * programs that tfjs allocates the output of, and the backend's pending command encoder, which must be submitted
 * before our own command buffers so the queue runs both in program order.
 */
export interface WebgpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size: boolean;
  /** Set by tfjs on programs that add into their output with atomics. */
  atomic?: boolean;
  uniforms?: string;
  getUserCode(): string;
}

export interface WebgpuBackend extends tf.KernelBackend {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  tensorMap: { get(dataId: object): { resource?: GPUBuffer } };
  uploadToGPU(dataId: object): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  runWebGPUProgram(
    program: WebgpuProgram,
    inputs: tf.TensorInfo[],
    dtype: tf.DataType,
    uniforms?: { type: string; data: number[] }[],
  ): tf.TensorInfo;
}

const backend = () => tf.backend() as WebgpuBackend;

/** The GPU buffer holding a tensor (uploaded first if tfjs still has it on the CPU). */
export function bufferOf(t: tf.Tensor): GPUBuffer {
  const b = backend();
  b.uploadToGPU(t.dataId);
  const resource = b.tensorMap.get(t.dataId).resource;
  if (!resource) throw new Error('tensor has no GPU buffer');
  return resource;
}

/** Submits what tfjs has recorded, so a command buffer submitted next runs after it. */
export function flushTfjs() {
  const b = backend();
  if (!b.commandEncoder) return;
  b.endComputePassEncoder();
  b.submitQueue();
}

/** Runs a program through tfjs (it allocates and tracks the output) and returns the output as a tensor. */
export function runProgram(
  program: WebgpuProgram,
  inputs: tf.Tensor[],
  dtype: tf.DataType,
  uniforms?: { type: string; data: number[] }[],
): tf.Tensor {
  const info = backend().runWebGPUProgram(program, inputs, dtype, uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** tfjs's dispatch for a flat layout: one invocation per output element, `workgroup` a group. */
export function flatDispatch(size: number, workgroup: number): [number, number, number] {
  return [Math.ceil(size / workgroup), 1, 1];
}
