import type { Activation, ActivationCache } from './activation.js';
import { sum, type BackwardContext, type ForwardContext, type Layer, type T2 } from './module.js';

export interface FeedForwardCache {
  intermediate: unknown;
  activation: ActivationCache;
  output: unknown;
}

/** The position-wise feed-forward transform: output(activation(intermediate(x))). Both projections are wrappable. */
export class FeedForward implements Layer<FeedForwardCache> {
  constructor(
    public intermediate: Layer,
    readonly activation: Activation,
    public output: Layer,
  ) {}

  forward(x: T2, ctx: ForwardContext) {
    const inter = this.intermediate.forward(x, ctx);
    const act = this.activation.forward(inter.y);
    const out = this.output.forward(act.y, ctx);
    return { y: out.y, cache: { intermediate: inter.cache, activation: act.cache, output: out.cache } };
  }

  backward(dy: T2, c: FeedForwardCache, ctx: BackwardContext): T2[] {
    const dact = sum(this.output.backward(dy, c.output, ctx));
    const [dinter] = this.activation.backward(dact, c.activation);
    return this.intermediate.backward(dinter, c.intermediate, ctx);
  }
}
