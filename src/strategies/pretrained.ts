import type { ParamSpec } from '../engine/params.js';

/**
 * Parameters of the pretrained model, which a penalty towards the pretrained weights covers: everything read from the
 * checkpoint but the task classifier (new for the task, as RecAdam leaves it unpenalised) and what modifiers add.
 * BERT's pooler is pretrained and covered.
 */
export const pretrainedBody = (spec: ParamSpec) => spec.source !== 'strategy' && !spec.name.startsWith('classifier.');
