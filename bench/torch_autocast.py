#!/usr/bin/env python3
"""The PyTorch peer of training.precision: bf16: runs a peer benchmark script (its path first, then its own
arguments) with every operation under torch.autocast('cpu', dtype=torch.bfloat16), as CPU mixed precision is
used. Autocast casts only the operations on its lists (linear layers, batched products); the optimizer's
arithmetic stays float32.

Usage: torch_autocast.py ../shared/bench/torch_bert_step.py --layers 12 --hidden 768 --heads 12 ..."""
import runpy
import sys

import torch

script = sys.argv[1]
sys.argv = sys.argv[1:]
with torch.autocast("cpu", dtype=torch.bfloat16):
    runpy.run_path(script, run_name="__main__")
