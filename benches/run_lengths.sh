#!/usr/bin/env bash
# The "Variable lengths" tables of BENCHMARKS.md: gru-wgpu (GPU adapter and CPU
# reference) on the padded batch and with `--lengths uniform|random|random-sorted`,
# then PyTorch padded against packed, ROUNDS rounds (default 3) interleaved so
# that the machine's drift falls on every variant alike; then the same lengths
# under a forced plan whose time loop reads the step flags (`windows/sequence`:
# its recurrent product is inside the loop's kernel, so groups of rows that
# are all padding skip it). Run from the repository root after
# `cargo build --release`; needs python3 with torch. The tables:
# python3 benches/lengths_table.py (then the same with the -forced file).
# FIRST_ROUND=N appends rounds N.. to the files instead of starting them anew;
# PART=main or PART=forced runs one half only.
set -euo pipefail
out=benches/results
bin=target/release/gru-wgpu
first=${FIRST_ROUND:-1}
rounds=${ROUNDS:-3}
mkdir -p "$out"
part=${PART:-all}
lengths=("" "--lengths uniform" "--lengths random" "--lengths random-sorted")
shapes=(
  ""                                                   # the default shapes
  "--batch 64 --seq 128 --hidden 128 --input 64"
  "--batch 16 --seq 64 --hidden 128 --bidirectional"
)
tag() { sed "s/^{/{\"round\":$1,/"; }
if [ "$part" != forced ]; then
  if [ "$first" = 1 ]; then
    : > "$out/devbox-lengths.jsonl"
    : > "$out/devbox-torch-packed.jsonl"
  fi
  for round in $(seq "$first" "$rounds"); do
    for s in "${shapes[@]}"; do
      for l in "${lengths[@]}"; do
        # shellcheck disable=SC2086
        $bin bench --device both --json $s $l | tag "$round" >> "$out/devbox-lengths.jsonl"
      done
      # shellcheck disable=SC2086
      python3 benches/torch_packed.py --json --lengths uniform,random,random-sorted $s 2>/dev/null \
        | tag "$round" >> "$out/devbox-torch-packed.jsonl"
    done
  done
fi
if [ "$part" != main ]; then
  [ "$first" = 1 ] && : > "$out/devbox-lengths-forced.jsonl"
  for round in $(seq "$first" "$rounds"); do
    for l in "${lengths[@]}"; do
      # shellcheck disable=SC2086
      $bin bench --json --plan windows/sequence --batch 64 --seq 128 --hidden 128 --input 64 $l \
        | tag "$round" >> "$out/devbox-lengths-forced.jsonl"
    done
  done
fi
