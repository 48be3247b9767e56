#!/usr/bin/env bash
# The performance issue's three shapes, forward plus backward, side by side in
# one run: burn 0.22.1 (benches/burn_gru), gru-wgpu, and PyTorch on the CPU.
# Run from the repository root after `cargo build --release` and
# `cargo build --release --manifest-path benches/burn_gru/Cargo.toml`.
set -euo pipefail
out=benches/results/devbox-targets.jsonl
: > "$out"
benches/burn_gru/target/release/burn-gru-bench 5 >> "$out"
for s in "1 256 64" "16 64 128" "64 64 256"; do
  set -- $s
  target/release/gru-wgpu bench --mode fwdbwd --batch "$1" --seq "$2" --hidden "$3" --json >> "$out"
  python3 benches/torch_gru.py --mode fwdbwd --batch "$1" --seq "$2" --hidden "$3" --json >> "$out"
done
target/release/gru-wgpu bench --mode fwdbwd --batch 1 --seq 256 --hidden 64 --compare "$out" > /dev/null
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
key = lambda r: (r["batch"], r["seq"], r["hidden"])
for k in sorted({key(r) for r in rows}):
    got = {r["framework"]: r["median_ms"] for r in rows if key(r) == k}
    line = f"B={k[0]} T={k[1]} H={k[2]}: " + ", ".join(f"{f} {ms:.1f} ms" for f, ms in sorted(got.items()))
    if "burn" in got and "gru-wgpu" in got:
        line += f"; burn / gru-wgpu = {got['burn'] / got['gru-wgpu']:.2f}"
    print(line)
PY
