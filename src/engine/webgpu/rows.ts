import * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebgpuProgram } from './tfjs.js';

/**
 * The gradient of a gathered table, [rows, width], from the gradient at each token, [tokens, width]: row r is the
 * sum of the tokens that read it, in token order. Each output element sums its own tokens, so no two invocations
 * write one element and the sum's order is fixed: reruns are bit-identical (tfjs's UnsortedSegmentSum adds with
 * atomics, in whatever order the GPU schedules). The grouping of tokens by row is built on the host, where the ids
 * already are.
 */
export function rowGradient(d: tf.Tensor2D, ids: Int32Array, rows: number): tf.Tensor2D {
  const width = d.shape[1];
  const order = Int32Array.from(ids.keys()).sort((a, b) => ids[a] - ids[b] || a - b);
  const slot = new Int32Array(rows).fill(-1);
  const starts: number[] = [];
  order.forEach((token, k) => {
    const row = ids[token];
    if (slot[row] < 0) {
      slot[row] = starts.length;
      starts.push(k);
    }
  });
  starts.push(order.length);
  const program: WebgpuProgram = {
    variableNames: ['d', 'slot', 'starts', 'order'],
    outputShape: [rows, width],
    shaderKey: 'childtune-row-gradient',
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(rows * width, 64),
    workgroupSize: [64, 1, 1],
    size: true,
    uniforms: 'width : i32,',
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let row = index / uniforms.width;
          let j = index - row * uniforms.width;
          let s = slot[row];
          var acc = 0.0;
          if (s >= 0) {
            for (var k = starts[s]; k < starts[s + 1]; k++) {
              acc += d[order[k] * uniforms.width + j];
            }
          }
          setOutputAtIndex(index, acc);
        }
      }`,
  };
  return tf.tidy(() =>
    runProgram(
      program,
      [d, tf.tensor1d(slot, 'int32'), tf.tensor1d(Int32Array.from(starts), 'int32'), tf.tensor1d(order, 'int32')],
      'float32',
      [{ type: 'int32', data: [width] }],
    ),
  ) as tf.Tensor2D;
}
