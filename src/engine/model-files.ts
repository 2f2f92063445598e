import fs from 'node:fs';
import path from 'node:path';
import { ModelError } from './config.js';

/** The weight files of a model directory, in transformers' order of preference. */
export const WEIGHT_FILES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
] as const;

/** Weights childtune cannot read, with the way to convert them. */
const FOREIGN_WEIGHTS: Record<string, string> = {
  'tf_model.h5': 'TensorFlow',
  'model.ckpt.index': 'TensorFlow 1',
  'flax_model.msgpack': 'Flax',
};

/** Written beside a saved model by a strategy whose parameters are kept apart (saved-strategy.ts). */
const STRATEGY_CONFIG = 'strategy.json';

/**
 * A model saved with its strategy's parameters apart is not a pretrained model to train from: refuse it, saying
 * why, never read it without them (loadSavedModel applies them, for encode and predict).
 */
export function refuseSavedApart(dir: string): void {
  const file = path.join(dir, STRATEGY_CONFIG);
  if (!fs.existsSync(file)) return;
  let kind = 'a strategy';
  try {
    kind = String((JSON.parse(fs.readFileSync(file, 'utf8')) as { kind?: unknown }).kind ?? kind);
  } catch {
    // Unreadable: still a model that is not whole without its strategy's files.
  }
  throw new ModelError(
    dir,
    `the model was trained with ${kind}, whose parameters are saved apart from the model's weights (described by strategy.json); a run cannot train from it, and without them the outputs would be the pretrained model's`,
    "`childtune encode` and `childtune predict` apply them; to train from it, load it with transformers (PEFT or AdapterHub, README 'Saving'), merge the modules and save it whole. A strategy that changes the model's own weights (vanilla, child-tuning, bitfit, lora merged) saves a model childtune trains from.",
  );
}

export const FETCH_HINT =
  'Download a model with `childtune fetch MODEL_ID` (for example google-bert/bert-base-uncased), or point at a directory that holds config.json, the weights and the tokenizer files.';

export interface ModelWeights {
  format: 'safetensors' | 'pytorch';
  /** The index of a sharded checkpoint (model.safetensors.index.json, pytorch_model.bin.index.json). */
  index?: string;
  /** The files holding tensors: one, or the shards an index names, in order. */
  files: string[];
}

/** Finds a model directory's weights as transformers does: safetensors before pytorch_model.bin, a single file before an index. */
export function findWeights(dir: string): ModelWeights {
  const present = WEIGHT_FILES.find((f) => isFile(path.join(dir, f)));
  if (!present) throw missingWeights(dir);
  const file = path.join(dir, present);
  const format = present.startsWith('model.safetensors') ? 'safetensors' : 'pytorch';
  if (!present.endsWith('.index.json')) return { format, files: [file] };
  return { format, index: file, files: shardsOf(file, dir) };
}

/** Whether a directory holds weights childtune can read (without opening them). */
export const hasWeights = (dir: string) => WEIGHT_FILES.some((f) => isFile(path.join(dir, f)));

/** The error for a directory without readable weights: what it has instead, and how to get a usable model. */
export function missingWeights(dir: string): ModelError {
  if (!isDirectory(dir)) return new ModelError(dir, 'model directory not found', FETCH_HINT);
  const foreign = Object.keys(FOREIGN_WEIGHTS).find((f) => isFile(path.join(dir, f)));
  if (foreign) {
    return new ModelError(
      dir,
      `holds only ${FOREIGN_WEIGHTS[foreign]} weights (${foreign}); childtune reads ${WEIGHT_FILES.join(', ')}`,
      `Convert them with transformers: AutoModel.from_pretrained(dir, from_${foreign.startsWith('flax') ? 'flax' : 'tf'}=True).save_pretrained(dir), or fetch the PyTorch weights with \`childtune fetch MODEL_ID\`.`,
    );
  }
  return new ModelError(dir, `has no weights (looked for ${WEIGHT_FILES.join(', ')})`, FETCH_HINT);
}

/** The shard files an index names, each checked to be a plain file beside the index. */
function shardsOf(indexFile: string, dir: string): string[] {
  const map = readWeightMap(indexFile);
  const shards = [...new Set(map.values())];
  if (!shards.length) throw new ModelError(indexFile, 'weight_map is empty');
  return shards.map((shard) => {
    const file = path.join(dir, shard);
    if (!isFile(file))
      throw new ModelError(
        indexFile,
        `names shard ${shard}, which is missing from ${dir}`,
        'A sharded checkpoint needs every shard its index lists; download the missing ones (or the whole model again with `childtune fetch MODEL_ID`).',
      );
    return file;
  });
}

/** An index file's weight_map (tensor name to shard file name), validated: shard names are plain file names. */
export function readWeightMap(indexFile: string): Map<string, string> {
  let raw: { weight_map?: unknown };
  try {
    raw = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw new ModelError(indexFile, `cannot read the shard index (${(e as Error).message})`);
  }
  const weightMap = raw?.weight_map;
  if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap))
    throw new ModelError(indexFile, 'has no weight_map object (tensor name to shard file)');
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || !shard || shard !== path.basename(shard) || shard === '.' || shard === '..') {
      throw new ModelError(
        indexFile,
        `weight_map sends ${name} to ${JSON.stringify(shard)}; a shard is a file name beside the index`,
      );
    }
    out.set(name, shard);
  }
  return out;
}

const isFile = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
const isDirectory = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
