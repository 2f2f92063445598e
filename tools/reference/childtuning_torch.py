#!/usr/bin/env python3
"""An independent PyTorch implementation of BERT fine-tuning with the official ChildTuningAdamW semantics
(AliceMind ChildTuning: F masks every parameter's gradient with Bernoulli(p)/p inside the optimizer, after
global-norm clipping, before the Adam moments; decoupled decay on the stepped weights, unmasked).

Not part of childtune: a yardstick for it. It reads what tools/reference/export.mjs wrote from a childtune run
directory (the tokenized subsample and dev split, childtune's data order, the initial weights) and the run's
hyper-parameters from that export.

Two modes:
  independent (default): torch's own shuffling, dropout, head initialisation and Bernoulli masks, seeded by --seed.
  check: childtune's data order and initial weights, no dropout (run childtune with training.dropout: false), and
    with --masks RUN_DIR the F masks childtune recorded (strategy.f_masks: record) instead of torch's; prints the
    per-step loss, to compare with childtune's metrics.jsonl step by step.

Usage (Debian's python3-torch):
  /usr/bin/python3 tools/reference/childtuning_torch.py EXPORT_DIR --strategy f --seed 3
  /usr/bin/python3 tools/reference/childtuning_torch.py EXPORT_DIR --mode check --strategy f --masks RUN_DIR
Prints one JSON line per evaluation and a final JSON line.
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("export")
ap.add_argument("--mode", choices=["independent", "check"], default="independent")
ap.add_argument("--strategy", choices=["vanilla", "f"], default="f")
ap.add_argument("--reserve-p", type=float, default=None, help="default: the run's strategy.reserve_p")
ap.add_argument("--seed", type=int, default=None, help="default: the run's training.seed")
ap.add_argument("--masks", help="check mode: a childtune run directory with recorded F masks (f-masks.json, f-masks.bin)")
ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (check mode)")
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)

data = json.load(open(os.path.join(a.export, "data.json")))
recipe = data["recipe"]
t = recipe["training"]
opt = t["optimizer"]
seed = t["seed"] if a.seed is None else a.seed
reserve_p = recipe["strategy"].get("reserve_p", 1.0) if a.reserve_p is None else a.reserve_p
check = a.mode == "check"
torch.manual_seed(seed)
gen = torch.Generator().manual_seed(seed)


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        lo, hi = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(body[lo:hi], dtype="<f4").copy()).reshape(info["shape"])
    return out


cfg = json.load(open(os.path.join(a.export, "init", "config.json")))
H, A, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
EPS_LN = cfg["layer_norm_eps"]
weights = read_safetensors(os.path.join(a.export, "init", "model.safetensors"))

# Hugging Face's BertForSequenceClassification parameter order.
names = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
         "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
for l in range(L):
    p = f"bert.encoder.layer.{l}."
    for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm",
              "intermediate.dense", "output.dense", "output.LayerNorm"]:
        names += [p + m + ".weight", p + m + ".bias"]
names += ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
params = {n: weights[n].clone().requires_grad_(True) for n in names}
if not check:
    # What the pretrained checkpoint lacks (here the classifier; the MLM checkpoint has a pooler) is initialised
    # from this implementation's own generator, as BertForSequenceClassification.from_pretrained does.
    pretrained = read_safetensors(os.path.join(recipe["model"]["path"], "model.safetensors"))
    with torch.no_grad():
        for n in ["bert.pooler.dense", "classifier"]:
            if n + ".weight" in pretrained and n + ".bias" in pretrained:
                params[n + ".weight"].copy_(pretrained[n + ".weight"])
                params[n + ".bias"].copy_(pretrained[n + ".bias"])
                continue
            params[n + ".weight"].normal_(0.0, cfg.get("initializer_range", 0.02), generator=gen)
            params[n + ".bias"].zero_()
P = params
drop_p = 0.0 if check or not t.get("dropout", True) else cfg["hidden_dropout_prob"]
drop_a = 0.0 if check or not t.get("dropout", True) else cfg["attention_probs_dropout_prob"]


def dense(x, n):
    return x @ P[n + ".weight"].t() + P[n + ".bias"]


def ln(x, n):
    return torch.nn.functional.layer_norm(x, (H,), P[n + ".weight"], P[n + ".bias"], EPS_LN)


def dropout(x, rate, train):
    return torch.nn.functional.dropout(x, rate, training=train and rate > 0)


def forward(ids, types, mask, train):
    b, s = ids.shape
    x = P["bert.embeddings.word_embeddings.weight"][ids] + P["bert.embeddings.position_embeddings.weight"][:s][None] + P["bert.embeddings.token_type_embeddings.weight"][types]
    x = dropout(ln(x, "bert.embeddings.LayerNorm"), drop_p, train)
    bias = ((1.0 - mask) * -1e9)[:, None, None, :]
    d = H // A
    for l in range(L):
        p = f"bert.encoder.layer.{l}."
        split = lambda z: z.view(b, s, A, d).transpose(1, 2)
        q, k, v = (split(dense(x, p + "attention.self." + m)) for m in ["query", "key", "value"])
        probs = dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, -1), drop_a, train)
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, H)
        x = ln(dropout(dense(ctx, p + "attention.output.dense"), drop_p, train) + x, p + "attention.output.LayerNorm")
        inter = torch.nn.functional.gelu(dense(x, p + "intermediate.dense"))
        x = ln(dropout(dense(inter, p + "output.dense"), drop_p, train) + x, p + "output.LayerNorm")
    pooled = torch.tanh(dense(x[:, 0], "bert.pooler.dense"))
    return dense(dropout(pooled, drop_p, train), "classifier")


def batch(split, rows):
    ids = [split["input_ids"][i] for i in rows]
    s = max(len(x) for x in ids)
    pad = lambda xs, v: [x + [v] * (s - len(x)) for x in xs]
    return (torch.tensor(pad(ids, data["pad_id"])), torch.tensor(pad([split["token_type_ids"][i] for i in rows], 0)),
            torch.tensor([[1.0] * len(x) + [0.0] * (s - len(x)) for x in ids]), torch.tensor([int(split["labels"][i]) for i in rows]))


class ChildTuningAdamW:
    """The official ChildTuningAdamW's step: mask (F) the clipped gradient, then Hugging Face's AdamW with
    bias correction and decoupled decay p -= lr * wd * p after the step."""

    def __init__(self, groups, betas, eps, mode, p):
        self.groups, self.b1, self.b2, self.eps, self.mode, self.p = groups, betas[0], betas[1], eps, mode, p
        self.state = {id(q): (torch.zeros_like(q), torch.zeros_like(q)) for g in groups for q in g["params"]}
        self.t = 0

    @torch.no_grad()
    def step(self, lr, masks=None):
        self.t += 1
        for g in self.groups:
            for name, q in zip(g["names"], g["params"]):
                grad = q.grad
                if self.mode == "f":
                    if masks is not None:
                        grad = grad * masks[name]
                    else:
                        grad = grad * (torch.bernoulli(torch.full_like(grad, self.p), generator=gen) / self.p)
                m, v = self.state[id(q)]
                m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
                step_size = lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
                q.addcdiv_(m, v.sqrt().add_(self.eps), value=-step_size)
                if g["weight_decay"] > 0:
                    q.add_(q, alpha=-lr * g["weight_decay"])


def recorded_masks(run_dir):
    """The masks a childtune run recorded: for each step, {name: mask * scale} in Hugging Face layout."""
    meta = json.load(open(os.path.join(run_dir, "f-masks.json")))
    raw = np.fromfile(os.path.join(run_dir, "f-masks.bin"), dtype=np.uint8).reshape(-1, meta["step_bytes"])
    for step in raw:
        out = {}
        for tensor in meta["tensors"]:
            bits = np.unpackbits(step[tensor["offset"]:tensor["offset"] + tensor["bytes"]], bitorder="little")[: tensor["elements"]]
            out[tensor["name"]] = torch.from_numpy(bits.reshape(tensor["shape"]).astype(np.float32) * np.float32(meta["scale"]))
        yield out


no_decay = lambda n: n.endswith(".bias") or "LayerNorm" in n
groups = [{"names": [n for n in names if not no_decay(n)], "weight_decay": opt["weight_decay"]},
          {"names": [n for n in names if no_decay(n)], "weight_decay": 0.0}]
for g in groups:
    g["params"] = [P[n] for n in g["names"]]
optimizer = ChildTuningAdamW(groups, opt["betas"], opt["eps"], a.strategy, reserve_p)
mask_stream = recorded_masks(a.masks) if a.masks else None

train, dev = data["train"], data["dev"]
n = len(train["labels"])
bs = t["batch_size"]
per_epoch = math.ceil(n / bs)
total = data["steps"]
warmup = math.floor(t["schedule"]["warmup_ratio"] * total)


def lr_at(step):
    if step < warmup:
        return opt["lr"] * step / max(1, warmup)
    if t["schedule"]["kind"] == "constant":
        return opt["lr"]
    return opt["lr"] * max(0.0, (total - step) / max(1, total - warmup))


@torch.no_grad()
def accuracy():
    correct = 0
    for lo in range(0, len(dev["labels"]), 64):
        ids, types, mask, labels = batch(dev, range(lo, min(lo + 64, len(dev["labels"]))))
        correct += (forward(ids, types, mask, False).argmax(-1) == labels).sum().item()
    return correct / len(dev["labels"])


step = 0
limit = a.steps or total
for epoch in range(math.ceil(t["epochs"])):
    order = data["order"][epoch] if check else torch.randperm(n, generator=gen).tolist()
    for b in range(per_epoch):
        if step >= limit:
            break
        ids, types, mask, labels = batch(train, order[b * bs:(b + 1) * bs])
        for q in P.values():
            q.grad = None
        loss = torch.nn.functional.cross_entropy(forward(ids, types, mask, True), labels)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(P.values()), t["max_grad_norm"]) if t["max_grad_norm"] > 0 else None
        optimizer.step(lr_at(step), next(mask_stream) if mask_stream else None)
        step += 1
        if check:
            print(json.dumps({"step": step, "loss": loss.item(), "grad_norm": None if norm is None else norm.item()}))
    if step >= limit and check and a.steps:
        break
    print(json.dumps({"epoch": epoch + 1, "accuracy": accuracy()}), flush=True)
print(json.dumps({"final": True, "strategy": a.strategy, "mode": a.mode, "seed": seed, "reserve_p": reserve_p, "accuracy": accuracy(), "steps": step}))
