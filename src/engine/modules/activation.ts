import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../config.js';
import { gelu } from '../kernels.js';
import type { Layer, T2 } from './module.js';

export type ActivationKind = ModelConfig['activation'] | 'tanh' | 'swish';
/** y, plus for erf-GELU its derivative, computed with y so the backward pass evaluates no transcendental. */
type Activated = { y: T2; dydx?: tf.Tensor };

function activate(kind: ActivationKind, x: T2): Activated {
  switch (kind) {
    case 'gelu':
      return gelu(x);
    case 'gelu_new':
      return {
        y: tf.mul(
          tf.mul(x, 0.5),
          tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1),
        ) as T2,
      };
    case 'relu':
      return { y: tf.relu(x) };
    case 'tanh':
      return { y: tf.tanh(x) };
    case 'swish': {
      // x sigmoid(x) (SiLU); its derivative s + y (1 - s), kept from the forward pass.
      const s = tf.sigmoid(x);
      const y = tf.mul(x, s) as T2;
      return { y, dydx: tf.add(s, tf.mul(y, tf.sub(1, s))) };
    }
  }
}

/** d activation / dx, given the input x and the forward result. */
function derivative(kind: ActivationKind, x: T2, { y, dydx }: Activated): tf.Tensor {
  return tf.tidy(() => {
    switch (kind) {
      case 'gelu':
      case 'swish':
        return dydx!;
      case 'gelu_new': {
        const c = Math.sqrt(2 / Math.PI);
        const t = tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c));
        return tf.add(
          tf.mul(tf.add(t, 1), 0.5),
          tf.mul(
            tf.mul(tf.mul(x, 0.5), tf.sub(1, tf.square(t))),
            tf.mul(tf.add(tf.mul(tf.square(x), 3 * 0.044715), 1), c),
          ),
        );
      }
      case 'relu':
        return tf.step(x);
      case 'tanh':
        return tf.sub(1, tf.square(y));
    }
  });
}

export interface ActivationCache {
  x: T2;
  activated: Activated;
}

/** An elementwise nonlinearity (no parameters). */
export class Activation implements Layer<ActivationCache> {
  constructor(readonly kind: ActivationKind) {}

  forward(x: T2) {
    const activated = activate(this.kind, x);
    return { y: activated.y, cache: { x, activated } };
  }

  backward(dy: T2, { x, activated }: ActivationCache): T2[] {
    return [tf.mul(dy, derivative(this.kind, x, activated)) as T2];
  }
}
