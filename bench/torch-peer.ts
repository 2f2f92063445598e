/** The PyTorch peer: the same step in PyTorch on this machine, when /usr/bin/python3 can import torch. */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BATCH, median, ROOT, SEQ, type Shape, SHAPES } from './shapes.js';

/**
 * PyTorch's step at a shape, in a process of its own: at least two warm-up steps (a process's first steps are slow),
 * the same thread count, the thread-count variables of OpenBLAS, OpenMP and MKL unset so torch.set_num_threads alone
 * decides (OPENBLAS_CORETYPE stays: without it OpenBLAS 0.3.21 runs a generic kernel on a CPU it does not know);
 * `autocast`: the step under torch.autocast('cpu', bfloat16), the peer of training.precision: bf16.
 */
export function torchPeer(shape: Shape, threads: number, steps = 12, warmup = 3, autocast = false) {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0)
    return {
      available: false,
      why: '/usr/bin/python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread)',
    };
  const blas = torchBlas();
  if (blas.reference)
    return {
      available: false,
      why: `PyTorch's BLAS is the unoptimised reference BLAS (${blas.path}), not a peer (apt-get install libopenblas0-pthread)`,
    };
  const script = path.resolve(ROOT, '..', 'shared', 'bench', 'torch_bert_step.py');
  if (!fs.existsSync(script)) return { available: false, why: `${script} not found` };
  const s = SHAPES[shape];
  // Only the thread counts: OPENBLAS_CORETYPE and the like pick OpenBLAS's kernels for a CPU it does not know.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(OPENBLAS|OMP|GOTO|MKL)_NUM_THREADS$/.test(k)),
  );
  const args = [
    '--layers',
    String(s.layers),
    '--hidden',
    String(s.hidden),
    '--heads',
    String(s.heads),
    '--seq',
    String(SEQ),
    '--batch',
    String(BATCH),
    '--steps',
    String(steps),
    '--warmup',
    String(Math.max(2, warmup)),
    '--threads',
    String(threads),
  ];
  const out = execFileSync(
    '/usr/bin/python3',
    autocast ? [path.join(ROOT, 'bench', 'torch_autocast.py'), script, ...args] : [script, ...args],
    { encoding: 'utf8', env },
  );
  return { available: true, blas: blas.path, ...JSON.parse(out.trim().split('\n').at(-1)!) };
}

/**
 * The BLAS library Debian's PyTorch loads (its matrix products go through libblas.so.3, an alternative): the netlib
 * reference BLAS, the default without OpenBLAS installed, is tens of times slower and would make any ratio meaningless.
 * Probed once per bench process: each probe starts Python and imports torch.
 */
let blasFound: { path: string; reference: boolean } | undefined;
function torchBlas(): { path: string; reference: boolean } {
  if (blasFound) return blasFound;
  const probe = spawnSync(
    '/usr/bin/python3',
    [
      '-c',
      'import os, torch; torch.ones(8, 8) @ torch.ones(8, 8); ' +
        'print(next((os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps") if "blas" in l.split()[-1]), "none"))',
    ],
    { encoding: 'utf8' },
  );
  const found = probe.stdout.trim().split('\n').at(-1) ?? 'none';
  return (blasFound = { path: found, reference: /\/blas\/libblas\.so/.test(found) });
}

/** PyTorch's steady-state step: the median over `processes` processes of each one's median step. */
export function torchPeers(shape: Shape, threads: number, processes: number, steps: number, autocast = false) {
  const runs = Array.from({ length: processes }, () => torchPeer(shape, threads, steps, 2, autocast));
  const ok = runs.filter((r) => r.available);
  if (!ok.length) return runs[0];
  return { ...ok[0], step_ms_median: median(ok.map((r) => r.step_ms_median)), processes: ok.length, rounds: ok };
}
