import { selectBackend, type BackendName } from './backend.js';
import { readModelConfig } from './config.js';
import { localModelDir } from './hub/cache.js';
import { batchOf } from './batch.js';
import type { ModifiersFrom } from './modules/modifier.js';
import { loadSavedModel } from './saved-strategy.js';
import { loadTokenizer } from './tokenizer.js';

/** `childtune encode`: tokens, ids and outputs of one text (pair), to check a checkpoint by hand. */
export async function encodeCommand(opts: {
  model: string;
  text: string;
  pair?: string;
  maxLength: number;
  backend: BackendName | 'auto';
  json?: boolean;
  /** Rebuilds a saved strategy's modules (the registry's modifier kinds), which the model's outputs include. */
  modifiersFrom: ModifiersFrom;
}): Promise<string> {
  const backend = await selectBackend(opts.backend);
  const dir = localModelDir(opts.model);
  const config = readModelConfig(dir);
  const tokenizer = loadTokenizer(dir, { lowerCase: config.doLowerCase });
  const { model, notes } = loadSavedModel(dir, {
    numLabels: config.numLabels ?? 2,
    seed: 0,
    modifiersFrom: opts.modifiersFrom,
  });
  const enc = tokenizer.encode(opts.text, opts.pair, opts.maxLength);
  const out = model.predict(batchOf([enc], enc.inputIds.length), true);
  const H = config.hiddenSize;
  const result = {
    backend: backend.name,
    tokens: enc.tokens,
    input_ids: enc.inputIds,
    token_type_ids: enc.tokenTypeIds,
    attention_mask: enc.attentionMask,
    last_hidden_state_first_token: [...out.hidden!.subarray(0, H)],
    pooled_output: [...out.pooled!],
    logits: [...out.logits],
    notes,
  };
  model.dispose();
  if (opts.json) return JSON.stringify(result);
  return [
    `backend: ${result.backend}`,
    `tokens: ${enc.tokens.join(' ')}`,
    `ids: ${enc.inputIds.join(' ')}`,
    `logits: ${result.logits.map((v) => v.toFixed(6)).join(' ')}`,
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
}
