import type { EncoderClassifier } from '../model.js';
import { arenaLengths, OptimizerKernels, planArenas, SharedArena } from '../optimizer-wasm.js';
import { sizeOf } from '../params.js';
import { SEGMENT_GRAIN } from './partition.js';

/** The parameter state every thread reads and writes, in shared memory. */
export interface SharedState {
  values: Float32Array[];
  /** One gradient buffer per shard; shard 0's holds the reduced gradient after a reduce round. */
  grads: Float32Array[][];
  m: Float32Array[];
  v: Float32Array[];
  /** One bitset per tensor (the engine's layout) beside its gradient, for a gradient transform's masks. */
  bits: Uint8Array[];
  /** The weights as loaded, before any update (read-only; a penalty towards the pretrained weights reads it), when asked for. */
  anchor?: Float32Array[];
  /**
   * Shared wasm memories (at most 4 GiB each), each holding the values, shard 0's gradients and the moments
   * of some tensors, with each thread's draw scratch, so their update runs in wasm, and when `shards` every
   * shard's gradients too, so their reduce does. A tensor in none of them (too large alone) runs the
   * JavaScript passes.
   */
  arenas: { memory: WebAssembly.Memory; draws: Float32Array[]; shards: boolean; tensors: number[] }[];
}

const shared = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));
const sharedBits = (n: number) => new Uint8Array(new SharedArrayBuffer(Math.ceil(n / 8)));

/**
 * Moves the model's weights into shared memory and allocates gradients, moments and bitsets beside them, and with
 * `anchor` a shared copy of the weights as they are now (as loaded: before any update or resume).
 */
export function allocateSharedState(
  model: EncoderClassifier,
  threads: number,
  arenaPages?: number,
  anchor = false,
): SharedState {
  const sizes = model.specs.map(sizeOf);
  // Each thread's scratch holds the random draws of one grain (a transform draws at most that many at once).
  const draws = OptimizerKernels.drawsFor(SEGMENT_GRAIN);
  // Tensors go in 4 GiB wasm arenas, with every shard's gradients where they fit; BERT-large needs two.
  const scratch = new Array(threads).fill(draws);
  // The anchor, when kept, shares its tensor's arena so the passes that read it run in wasm.
  const own = anchor ? 1 : 0;
  const plan = planArenas(sizes, 3 + threads + own, threads, scratch, arenaPages);
  const arenas = plan.groups.map((group) => {
    const copies = (group.shards ? 3 + threads : 4) + own;
    // Sized as planArenas sized the group, so it always fits; the bitsets live beside each gradient.
    const arena = SharedArena.create([...arenaLengths(sizes, group.tensors, copies), ...scratch], arenaPages)!;
    return { group, arena, draws: Array.from({ length: threads }, () => arena.floats(draws)) };
  });
  const home = sizes.map((): { arena: SharedArena; shards: boolean } | undefined => undefined);
  for (const { group, arena } of arenas) for (const t of group.tensors) home[t] = { arena, shards: group.shards };
  const alloc = (t: number, everyShard = false) => {
    const h = home[t];
    return h && (!everyShard || h.shards) ? h.arena.floats(sizes[t]) : shared(sizes[t]);
  };
  const anchored = anchor
    ? model.values.map((v, t) => {
        const copy = alloc(t);
        copy.set(v);
        return copy;
      })
    : undefined;
  model.values.forEach((v, i) => {
    const s = alloc(i);
    s.set(v);
    model.values[i] = s;
  });
  model.markDirty();
  return {
    values: model.values,
    grads: Array.from({ length: threads }, (_, k) => sizes.map((_, t) => alloc(t, k > 0))),
    m: sizes.map((_, t) => alloc(t)),
    v: sizes.map((_, t) => alloc(t)),
    bits: sizes.map((n, t) => home[t]?.arena.bits(n) ?? sharedBits(n)),
    anchor: anchored,
    arenas: arenas.map(({ group, arena, draws }) => ({
      memory: arena.memory,
      draws,
      shards: group.shards,
      tensors: group.tensors,
    })),
  };
}
