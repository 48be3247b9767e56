#!/usr/bin/env python3
"""The automatic plan against the best forced plan, at each default bench
shape (forward+backward), on this machine's adapter.

For each shape: one `bench --plan all` pass (3 timed calls per plan) ranks
every plan of the coverage set that applies; then the automatic plan and the
three fastest forced plans are timed again, interleaved, ROUNDS times with
ITERS timed calls each; the table gives each one's median over all its
calls and the ratio auto / best forced.

Usage: python3 scripts/auto_vs_forced.py [--bin target/release/gru-wgpu]
       [--rounds 3] [--iters 5] [--shapes 1x256x64,16x64x32,...] [--out F.jsonl]
The plans are tuned (or read from the plan cache) by the first automatic
call of each shape, as a user's first call would be.
"""
import argparse
import json
import statistics
import subprocess
import sys

DEFAULT_SHAPES = "1x256x64,16x64x32,16x64x64,16x64x128,16x64x256,64x64x256"


def bench(binary, b, t, h, plan, iters, warmup, out):
    cmd = [binary, "bench", "--batch", str(b), "--seq", str(t), "--hidden", str(h),
           "--mode", "fwdbwd", "--plan", plan, "--iters", str(iters), "--warmup", str(warmup), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    rows = [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]
    if out:
        for r in rows:
            out.write(json.dumps(r) + "\n")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/gru-wgpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--out")
    a = ap.parse_args()
    out = open(a.out, "w") if a.out else None
    print("| shape (fwd+bwd) | automatic plan | its median ms | best forced plan | its median ms | auto / best | plans ranked |")
    print("|---|---|---:|---|---:|---:|---:|")
    for s in a.shapes.split(","):
        b, t, h = (int(v) for v in s.split("x"))
        ranked = bench(a.bin, b, t, h, "all", 3, 1, out)
        auto = next(r for r in ranked if r["path"].startswith("auto:"))
        forced = sorted((r for r in ranked if not r["path"].startswith("auto:")), key=lambda r: r["median_ms"])
        top = [r["plan"] for r in forced[:3]]
        times = {"auto": [], **{p: [] for p in top}}
        for _ in range(a.rounds):
            for p in times:
                r = bench(a.bin, b, t, h, p, a.iters, 1, out)[0]
                times[p].append(r["median_ms"])
        med = {p: statistics.median(v) for p, v in times.items()}
        best = min(top, key=lambda p: med[p])
        print(f"| B={b} T={t} H={h} | {auto['plan']} | {med['auto']:.1f} | {best} | {med[best]:.1f} | "
              f"{med['auto'] / med[best]:.3f} | {len(forced)} |", flush=True)


if __name__ == "__main__":
    main()
