#!/usr/bin/env bash
# Every measurement of BENCHMARKS.md, in one run on one machine: the JSON lines
# land in benches/results/, the plot in docs/. Run from the repository root
# after `cargo build --release`; needs python3 with torch for the PyTorch rows.
set -euo pipefail
out=benches/results
bin=target/release/gru-wgpu
mkdir -p "$out" docs
$bin bench --device both --json > "$out/devbox-default.jsonl"
python3 benches/torch_gru.py --json > "$out/devbox-torch-cpu.jsonl"
for p in storage windows; do
  for r in per-step persistent; do
    $bin bench --mode fwdbwd --products $p --recurrence $r --json > "$out/devbox-path-$p-$r.jsonl"
  done
done
$bin bench-gemm --json --m 512 --n 512 --k 512 > "$out/devbox-gemm.jsonl"
$bin bench-gemm --json --m 4096 --n 768 --k 256 >> "$out/devbox-gemm.jsonl"
$bin bench-gemm --json --m 768 --n 256 --k 4096 >> "$out/devbox-gemm.jsonl"
$bin bench-gemm --json --m 1024 --n 384 --k 128 >> "$out/devbox-gemm.jsonl"
$bin bench-gemm --json --m 64 --n 768 --k 256 >> "$out/devbox-gemm.jsonl"
$bin bench --device both --batch 16 --seq 64 --hidden 32,64,128,256 --json --plot docs/throughput-lavapipe.svg > "$out/devbox-sweep.jsonl"
