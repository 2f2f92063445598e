import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { nativeKernels } from './native.js';

/**
 * Our own matrix kernels for the wasm backend (src/engine/wasm/kernels.wat), registered as tfjs kernels so
 * they read and write tensors in place on the backend's heap. Measured against tfjs 4.22's own wasm matMul
 * (XNNPACK): about 35-40 GFLOP/s against 20-25 for 2-D products, any operand strides at no extra cost
 * (tfjs needs explicit transposes), and attention heads addressed inside [tokens, hidden] activations, so
 * the per-head reshapes and transposes of the attention block disappear. See BENCHMARKS.md.
 */

/** Where element (entry e0, entry e1, row i, column j) of an operand lives: e0*entry[0] + e1*entry[1] + i*row + j*col. */
export interface Layout {
  entry: [number, number];
  row: number;
  col: number;
}

/**
 * A batch of products C = A x B over entries [n0, n1]: A is M x K, B is K x N, C is M x N. The output is a
 * fresh tensor of `shape`, which C's layout must cover exactly (its columns are contiguous).
 */
export interface StridedProduct {
  entries: [number, number];
  M: number;
  K: number;
  N: number;
  a: Layout;
  b: Layout;
  c: Omit<Layout, 'col'>;
  shape: number[];
}

/** The parts of tfjs-backend-wasm's BackendWasm that the kernels use. */
interface WasmBackend {
  wasm: { _malloc(bytes: number): number; _free(ptr: number): void; asm: { memory: WebAssembly.Memory } };
  dataIdMap: { get(id: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

interface Kernels {
  gemm(
    A: number,
    aRow: number,
    aCol: number,
    B: number,
    bRow: number,
    bCol: number,
    C: number,
    cRow: number,
    M: number,
    K: number,
    N: number,
    scratch: number,
  ): void;
  colsum(X: number, rows: number, cols: number, out: number): void;
  addRows(X: number, b: number, rows: number, cols: number): void;
  dropoutMask(D: number, out: number, n: number, threshold: number, scale: number): void;
  gelu(X: number, Y: number, D: number, n: number): void;
  layerNorm(
    X: number,
    G: number,
    Bias: number,
    Y: number,
    H: number,
    R: number,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  layerNormBackward(
    DY: number,
    G: number,
    H: number,
    R: number,
    D: number,
    DG: number,
    DB: number,
    rows: number,
    cols: number,
  ): void;
  gates(
    A: number,
    U: number,
    Z: number,
    DZ: number,
    P: number,
    n: number,
    lower: number,
    upper: number,
    c: number,
    lambda: number,
    uMin: number,
    uMax: number,
  ): void;
  gatedValue(B: number, D: number, Z: number, C: number, out: number, n: number): void;
  gatedGradients(
    G: number,
    D: number,
    Z: number,
    DZ: number,
    P: number,
    C: number,
    GD: number,
    GA: number,
    S: number,
    n: number,
  ): void;
}

const GEMM = 'ChildtuneStridedMatMul';
const COLSUM = 'ChildtuneColumnSum';
const GELU = 'ChildtuneGelu';
const LAYER_NORM = 'ChildtuneLayerNorm';
const LAYER_NORM_BACKWARD = 'ChildtuneLayerNormBackward';
const DROPOUT = 'ChildtuneDropoutMask';
const GATES = 'ChildtuneHardConcreteGates';
const GATED_VALUE = 'ChildtuneGatedValue';
const GATED_GRADIENTS = 'ChildtuneGatedGradients';

let compiled: WebAssembly.Module | undefined;
/** One instance per backend: each worker thread has its own backend and heap. */
const instances = new WeakMap<object, Kernels>();

function kernelsFor(backend: WasmBackend): Kernels {
  let k = instances.get(backend);
  if (!k) {
    compiled ??= new WebAssembly.Module(readFileSync(new URL('./wasm/kernels.wasm', import.meta.url)));
    k = new WebAssembly.Instance(compiled, { env: { memory: backend.wasm.asm.memory } }).exports as unknown as Kernels;
    instances.set(backend, k);
  }
  return k;
}

const address = (backend: WasmBackend, t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;

/** A 2-D product's fresh output with a bias row added in place, when there is one. */
function withBias(be: WasmBackend, out: tf.TensorInfo, bias: tf.TensorInfo | undefined, p: StridedProduct) {
  if (bias) kernelsFor(be).addRows(address(be, out), address(be, bias), p.M, p.N);
  return out;
}

/** Registers a wasm kernel whose body sees the backend with the parts we use. */
function wasmKernel(
  kernelName: string,
  body: (be: WasmBackend, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap) => tf.TensorInfo | tf.TensorInfo[],
) {
  tf.registerKernel({
    kernelName,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => body(backend as unknown as WasmBackend, inputs, attrs ?? {}),
  });
}

function register() {
  if (tf.getKernel(GEMM, 'wasm')) return;
  wasmKernel(GEMM, (be, inputs, attrs) => {
    const p = (attrs as unknown as { product: StridedProduct }).product;
    const out = be.makeOutput(p.shape, 'float32');
    const [a, b, c] = [address(be, inputs.a!), address(be, inputs.b!), address(be, out)];
    const { native } = nativeKernels();
    if (native) {
      // Same heap, same arithmetic; the entry loop runs in C.
      native.gemm(
        be.wasm.asm.memory.buffer as ArrayBuffer,
        a,
        p.a.row,
        p.a.col,
        ...p.a.entry,
        b,
        p.b.row,
        p.b.col,
        ...p.b.entry,
        c,
        p.c.row,
        ...p.c.entry,
        p.M,
        p.K,
        p.N,
        ...p.entries,
      );
      return withBias(be, out, inputs.bias, p);
    }
    const k = kernelsFor(be);
    const scratch = be.wasm._malloc(4 * (Math.ceil(p.N / 8) * 8 * p.K + 4 * p.K + 32));
    for (let e0 = 0; e0 < p.entries[0]; e0++) {
      for (let e1 = 0; e1 < p.entries[1]; e1++) {
        const at = (base: number, l: { entry: [number, number] }) => base + 4 * (e0 * l.entry[0] + e1 * l.entry[1]);
        k.gemm(at(a, p.a), p.a.row, p.a.col, at(b, p.b), p.b.row, p.b.col, at(c, p.c), p.c.row, p.M, p.K, p.N, scratch);
      }
    }
    be.wasm._free(scratch);
    return withBias(be, out, inputs.bias, p);
  });
  wasmKernel(COLSUM, (be, { x }) => {
    const [rows, cols] = x!.shape;
    const out = be.makeOutput([cols], 'float32');
    kernelsFor(be).colsum(address(be, x!), rows, cols, address(be, out));
    return out;
  });
  wasmKernel(GELU, (be, { x }) => {
    const [y, dydx] = [be.makeOutput(x!.shape, 'float32'), be.makeOutput(x!.shape, 'float32')];
    const args = [address(be, x!), address(be, y), address(be, dydx), tf.util.sizeFromShape(x!.shape)] as const;
    // The native kernel computes the same bits, eight or sixteen lanes at a time.
    const { native } = nativeKernels();
    if (native?.gelu) native.gelu(be.wasm.asm.memory.buffer as ArrayBuffer, ...args);
    else kernelsFor(be).gelu(...args);
    return [y, dydx];
  });
  wasmKernel(LAYER_NORM, (be, { x, gain, bias }, attrs) => {
    const [rows, cols] = x!.shape;
    const [y, xhat, rstd] = [
      be.makeOutput([rows, cols], 'float32'),
      be.makeOutput([rows, cols], 'float32'),
      be.makeOutput([rows, 1], 'float32'),
    ];
    const { eps } = attrs as unknown as { eps: number };
    kernelsFor(be).layerNorm(
      address(be, x!),
      address(be, gain!),
      address(be, bias!),
      address(be, y),
      address(be, xhat),
      address(be, rstd),
      rows,
      cols,
      eps,
    );
    return [y, xhat, rstd];
  });
  wasmKernel(LAYER_NORM_BACKWARD, (be, { dy, gain, xhat, rstd }, attrs) => {
    const [rows, cols] = dy!.shape;
    const { gainGradient, biasGradient } = attrs as unknown as { gainGradient: boolean; biasGradient: boolean };
    const dx = be.makeOutput([rows, cols], 'float32');
    const dg = gainGradient ? be.makeOutput([cols], 'float32') : undefined;
    const db = biasGradient ? be.makeOutput([cols], 'float32') : undefined;
    kernelsFor(be).layerNormBackward(
      address(be, dy!),
      address(be, gain!),
      address(be, xhat!),
      address(be, rstd!),
      address(be, dx),
      dg ? address(be, dg) : 0,
      db ? address(be, db) : 0,
      rows,
      cols,
    );
    return [dx, ...(dg ? [dg] : []), ...(db ? [db] : [])];
  });
  wasmKernel(DROPOUT, (be, { draws }, attrs) => {
    const { shape, threshold, scale } = attrs as unknown as { shape: number[]; threshold: number; scale: number };
    const out = be.makeOutput(shape, 'float32');
    kernelsFor(be).dropoutMask(address(be, draws!), address(be, out), tf.util.sizeFromShape(shape), threshold, scale);
    return out;
  });
  wasmKernel(GATES, (be, { logAlpha, draws }, attrs) => {
    const { lower, upper, l0Scale, lambda, uMin, uMax } = attrs as unknown as GateConstants;
    const shape = logAlpha!.shape;
    const [z, dz, penalty] = [0, 1, 2].map(() => be.makeOutput(shape, 'float32'));
    kernelsFor(be).gates(
      address(be, logAlpha!),
      draws ? address(be, draws) : 0,
      address(be, z),
      address(be, dz),
      address(be, penalty),
      tf.util.sizeFromShape(shape),
      lower,
      upper,
      l0Scale,
      lambda,
      uMin,
      uMax,
    );
    return [z, dz, penalty];
  });
  wasmKernel(GATED_VALUE, (be, { base, delta, z, scale }) => {
    const out = be.makeOutput(base!.shape, 'float32');
    kernelsFor(be).gatedValue(
      address(be, base!),
      address(be, delta!),
      address(be, z!),
      address(be, scale!),
      address(be, out),
      tf.util.sizeFromShape(base!.shape),
    );
    return out;
  });
  wasmKernel(GATED_GRADIENTS, (be, { g, delta, z, dz, penalty, scale }) => {
    const [gDelta, gLogAlpha] = [0, 1].map(() => be.makeOutput(g!.shape, 'float32'));
    const sum = be.makeOutput([1], 'float32');
    kernelsFor(be).gatedGradients(
      address(be, g!),
      address(be, delta!),
      address(be, z!),
      address(be, dz!),
      address(be, penalty!),
      address(be, scale!),
      address(be, gDelta),
      address(be, gLogAlpha),
      address(be, sum),
      tf.util.sizeFromShape(g!.shape),
    );
    return [gDelta, gLogAlpha, sum];
  });
}

/**
 * A float32 tensor's values as a view of the wasm heap, without the copy dataSync makes: valid only until the next
 * allocation or disposal on the backend, so read it at once.
 */
export function wasmHeapView(t: tf.Tensor): Float32Array {
  const be = tf.backend() as unknown as WasmBackend;
  return new Float32Array(be.wasm.asm.memory.buffer, address(be, t), t.size);
}

/** Whether our wasm kernels serve the active backend. */
export function wasmKernelsActive(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  register();
  return true;
}

/** The products; with `bias` (one product, [N]) that row added to each of its output's rows. */
export function stridedMatMul(a: tf.Tensor, b: tf.Tensor, product: StridedProduct, bias?: tf.Tensor): tf.Tensor {
  const inputs: tf.NamedTensorMap = bias ? { a, b, bias } : { a, b };
  return tf.engine().runKernel(GEMM, inputs, { product } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

export function wasmColumnSum(x: tf.Tensor2D): tf.Tensor1D {
  return tf.engine().runKernel(COLSUM, { x }, {}) as tf.Tensor1D;
}

/** A dropout mask of `shape` from 32-bit draws (int32, two elements each): kept elements `scale`, the others 0. */
export function wasmDropoutMask(draws: tf.Tensor, shape: number[], threshold: number, scale: number): tf.Tensor {
  return tf
    .engine()
    .runKernel(DROPOUT, { draws }, { shape, threshold, scale } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * The hard-concrete gates' stretch [lower, upper], the L0 term (l0Scale is c in its probability sigmoid(a - log c),
 * lambda its weight) and the clamp [uMin, uMax] of the uniforms f32(r) 2^-32 made from 32-bit draws r.
 */
export interface GateConstants {
  lower: number;
  upper: number;
  l0Scale: number;
  lambda: number;
  uMin: number;
  uMax: number;
}

/** Hard-concrete gates z, dz/dlog_alpha and the L0 term's gradient (draws: training's 32-bit draws as int32, or none); size a multiple of 4. */
export function wasmGates(logAlpha: tf.Tensor, draws: tf.Tensor | null, k: GateConstants) {
  const inputs: tf.NamedTensorMap = draws ? { logAlpha, draws } : { logAlpha };
  const [z, dz, penalty] = tf.engine().runKernel(GATES, inputs, k as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { z, dz, penalty };
}

/** base + (scale z) delta; scale a [1] tensor, size a multiple of 4. */
export function wasmGatedValue(base: tf.Tensor, delta: tf.Tensor, z: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(GATED_VALUE, { base, delta, z, scale }, {}) as tf.Tensor;
}

/** What a gated difference's backward reads: g by its value, the difference, its gates' z, dz and L0 term, the tensor's gate. */
export interface GatedGradientInputs {
  g: tf.Tensor;
  delta: tf.Tensor;
  z: tf.Tensor;
  dz: tf.Tensor;
  penalty: tf.Tensor;
  scale: tf.Tensor;
}

/** A gated difference's gradients from g (see gatedGradients in kernels.wat); size a multiple of 4. */
export function wasmGatedGradients(inputs: GatedGradientInputs) {
  const [delta, logAlpha, sum] = tf.engine().runKernel(GATED_GRADIENTS, { ...inputs }, {}) as tf.Tensor[];
  return { delta, logAlpha, sum };
}

/** Erf-GELU and its derivative in one pass; the element count must be a multiple of 4. */
export function wasmGelu(x: tf.Tensor2D): { y: tf.Tensor2D; dydx: tf.Tensor2D } {
  const [y, dydx] = tf.engine().runKernel(GELU, { x }, {}) as tf.Tensor2D[];
  return { y, dydx };
}

/** LayerNorm's forward over [rows, cols]: its output, the normalised input and 1/std ([rows, 1]), for the backward. */
export function wasmLayerNorm(x: tf.Tensor2D, gain: tf.Tensor, bias: tf.Tensor, eps: number) {
  const [y, xhat, rstd] = tf
    .engine()
    .runKernel(LAYER_NORM, { x, gain, bias }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { y: y as tf.Tensor2D, xhat: xhat as tf.Tensor2D, rstd };
}

/** LayerNorm's backward from dy: the input's gradient, and the gain's and bias's where asked for. */
export function wasmLayerNormBackward(
  dy: tf.Tensor2D,
  gain: tf.Tensor,
  xhat: tf.Tensor2D,
  rstd: tf.Tensor,
  gainGradient: boolean,
  biasGradient: boolean,
) {
  const out = tf.engine().runKernel(LAYER_NORM_BACKWARD, { dy, gain, xhat, rstd }, {
    gainGradient,
    biasGradient,
  } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  const [dx, ...rest] = out;
  return {
    dx: dx as tf.Tensor2D,
    dg: gainGradient ? (rest.shift() as tf.Tensor1D) : undefined,
    db: biasGradient ? (rest.shift() as tf.Tensor1D) : undefined,
  };
}
