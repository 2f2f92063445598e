/** A padded batch, row-major [batch, seq]. */
export interface Batch {
  batch: number;
  seq: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Float32Array;
  /** Class indices, or scores for regression. */
  labels: Float32Array;
}

export interface StepResult {
  loss: number;
  /** Output scores [batch, numLabels]. */
  logits: Float32Array;
}

/** How one pass's gradients enter the buffers: scaled by `weight` (its share of the shard's rows), added or stored. */
export interface GradientPass {
  weight: number;
  accumulate: boolean;
}
