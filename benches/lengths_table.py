#!/usr/bin/env python3
"""The "Variable lengths" tables of BENCHMARKS.md from benches/run_lengths.sh's files.

Per shape, mode and implementation: each variant's time (padded, then
--lengths uniform, random, random-sorted) and, in brackets, its time over the
padded batch's (below 1: faster than padded). --stat median (default): the
median over rounds of each round's median ms; --stat min: the fastest single
call over every round (interference such as a VM's steal time only adds time).

    python3 benches/lengths_table.py [--stat median|min] [FILE.jsonl ...]
"""

import argparse
import json
import statistics
from collections import defaultdict

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--stat", choices=["median", "min"], default="median")
ap.add_argument("files", nargs="*",
                default=["benches/results/devbox-lengths.jsonl", "benches/results/devbox-torch-packed.jsonl"])
a = ap.parse_args()

VARIANTS = [None, "uniform", "random", "random-sorted"]
times = defaultdict(list)
valid = {}
rounds = set()
order = []
for path in a.files:
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        rounds.add(r.get("round"))
        shape = f"B={r['batch']} T={r['seq']} I={r['input']} H={r['hidden']}" + (" bidir" if r["bidirectional"] else "")
        if r["framework"] == "gru-wgpu":
            who = "gru-wgpu llvmpipe" if r["impl"] == "gpu" else "gru-wgpu CPU ref"
            if r.get("plan") and not r["path"].startswith("auto:"):
                who += f" ({r['plan']})"
        else:
            who = "PyTorch CPU"
        key = (shape, r["mode"], who)
        if key not in order:
            order.append(key)
        times[key + (r.get("lengths"),)].append(r["median_ms"] if a.stat == "median" else r["min_ms"])
        if r.get("lengths") == "random":
            valid[(shape, r["framework"])] = r["valid_fraction"]


def stat(v):
    return statistics.median(v) if a.stat == "median" else min(v)


print(f"{a.stat} ms over {len(rounds)} round(s); (x): over padded")
print()
print("| shape | mode | implementation | valid (random) | padded | uniform | random | random-sorted |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for key in order:
    shape, mode, who = key
    fw = "torch" if who.startswith("PyTorch") else "gru-wgpu"
    cells = []
    pad = stat(times[key + (None,)]) if times[key + (None,)] else None
    for v in VARIANTS:
        t = times[key + (v,)]
        if not t:
            cells.append("-")
        elif v is None or pad is None:
            cells.append(f"{stat(t):.1f}")
        else:
            cells.append(f"{stat(t):.1f} ({stat(t) / pad:.2f})")
    mode_label = "fwd+bwd" if mode == "fwdbwd" else mode
    print(f"| {shape} | {mode_label} | {who} | {valid.get((shape, fw), float('nan')):.2f} | " + " | ".join(cells) + " |")
