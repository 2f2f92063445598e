import type { ParamSpec } from '../engine/params.js';

/**
 * What trains beside a method that freezes the model (the `head` option): the classifier only (the module PEFT's
 * SEQ_CLS task saves, BitFit's classifier), or BERT's pooler dense layer too. RoBERTa and ELECTRA have no pooler
 * (their classifier holds its dense layer), so both values train the same tensors there.
 */
export type Head = 'classifier' | 'pooler+classifier';

/** Whether a tensor of the model's own is in the head that trains. */
export const inHead = (head: Head) => (spec: ParamSpec) =>
  spec.group === 'head' && (head === 'pooler+classifier' || spec.name.startsWith('classifier.'));
