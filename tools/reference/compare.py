#!/usr/bin/env python3
"""Welch's t-test between two samples of dev accuracies: childtune runs (results.json under the run directories
a glob names) against the PyTorch reference's final JSON lines (a file).
Usage: compare.py 'RUNS_GLOB' REFERENCE.jsonl"""
import glob
import json
import math
import statistics
import sys


def betainc(a, b, x):
    """Regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1 - betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        num = 1.0 if i == 0 else (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)) if i % 2 == 0 else -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(c * d - 1) < 1e-14:
            break
    return front * (f - 1)


def welch(x, y):
    vx, vy = statistics.variance(x) / len(x), statistics.variance(y) / len(y)
    t = (statistics.mean(x) - statistics.mean(y)) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return t, df, betainc(df / 2, 0.5, df / (df + t * t))


ours = [json.load(open(f))["metrics"]["accuracy"] * 100 for f in sorted(glob.glob(sys.argv[1] + "/results.json"))]
ref = [json.loads(l)["accuracy"] * 100 for l in open(sys.argv[2]) if '"final"' in l]
for name, xs in [("childtune", ours), ("reference", ref)]:
    print(f"{name}: {statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f} (n={len(xs)}, sample std; standard error {statistics.stdev(xs) / math.sqrt(len(xs)):.2f})")
t, df, p = welch(ours, ref)
print(f"difference {statistics.mean(ours) - statistics.mean(ref):+.2f} points; Welch t = {t:.2f} (df {df:.1f}), two-sided p = {p:.3f}")
