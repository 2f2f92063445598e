import type { ModelEditor } from '../engine/modules/modifier.js';

/**
 * Freezes every parameter of the model but the classifier's output layer (weight and bias), which trains as usual:
 * the base for strategies that fine-tune through parameters of their own (diff pruning, mask tuning).
 */
export function freezeAllButClassifier(editor: ModelEditor) {
  const trained = new Set(
    editor.denseSites.filter((s) => s.role === 'head-out').flatMap((s) => [s.dense.weight.spec, s.dense.bias.spec]),
  );
  editor.setTrainable((spec) => trained.has(spec));
}
