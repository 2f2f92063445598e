import fs from 'node:fs';
import path from 'node:path';
import { ModelError } from './config.js';
import { findWeights, readWeightMap, type ModelWeights } from './model-files.js';
import { parseSafetensors, type TensorInfo } from './safetensors.js';
import { parseTorchBin } from './torch-bin.js';

/** A checkpoint tensor and the file that holds it (for errors that name the file). */
export interface CheckpointTensor extends TensorInfo {
  file: string;
}

export interface Checkpoint {
  weights: ModelWeights;
  tensors: Map<string, CheckpointTensor>;
  /** The file to name in errors about the checkpoint as a whole: the index of a sharded one. */
  source: string;
}

/**
 * Reads every tensor of a model directory's weights, whichever format and sharding transformers would load. Not
 * memoised: the parsed tensors are freed once the model has copied them (at BERT-large a kept copy is 1.3 GB).
 */
export function readCheckpoint(dir: string): Checkpoint {
  const weights = findWeights(dir);
  return { weights, tensors: readTensors(weights), source: weights.index ?? weights.files[0] };
}

function readTensors(weights: ModelWeights): Map<string, CheckpointTensor> {
  const tensors = new Map<string, CheckpointTensor>();
  for (const file of weights.files) {
    for (const [name, tensor] of readWeightFile(file, weights.format)) {
      const other = tensors.get(name);
      if (other)
        throw new ModelError(
          file,
          `tensor ${name} is also in ${path.basename(other.file)}`,
          'Shards of one checkpoint hold disjoint tensors; the shard files are mixed from different checkpoints.',
        );
      tensors.set(name, Object.assign(tensor, { file }));
    }
  }
  if (weights.index) {
    // The index says where each tensor is; a tensor it lists that its shard lacks means a mixed or partial download.
    for (const [name, shard] of readWeightMap(weights.index)) {
      const tensor = tensors.get(name);
      if (!tensor || path.basename(tensor.file) !== shard)
        throw new ModelError(
          weights.index,
          `lists ${name} in ${shard}, but ${tensor ? `it is in ${path.basename(tensor.file)}` : 'no shard holds it'}`,
          'The shards do not match their index: download the checkpoint again.',
        );
    }
  }
  return tensors;
}

function readWeightFile(file: string, format: ModelWeights['format']): Map<string, TensorInfo> {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : code === 'ERR_FS_FILE_TOO_LARGE'
              ? 'larger than Node can read into memory (2 GiB per file); re-save the checkpoint sharded (save_pretrained max_shard_size)'
              : (e as Error).message;
    throw new ModelError(file, `cannot read the weights: ${why}`);
  }
  return format === 'safetensors' ? parseSafetensors(buf, file) : parseTorchBin(buf, file);
}
