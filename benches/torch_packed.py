#!/usr/bin/env python3
"""PyTorch's nn.GRU on a padded batch against the same batch packed, the
counterpart of `gru-wgpu bench --lengths`, with the same JSON fields.

    python3 benches/torch_packed.py --json > torch-packed.jsonl    # the default shapes
    python3 benches/torch_packed.py --batch 64 --seq 128 --hidden 128 --input 64 --json
    gru-wgpu bench --lengths random --compare torch-packed.jsonl   # ours against the packed rows

For each shape and mode it times, in this order:
- `padded`: nn.GRU on the whole (T, B, I) tensor, every sequence T steps
  (the rows carry no `lengths` field, as `bench` without --lengths);
- each of --lengths (default `random`): the same tensor through
  `pack_padded_sequence(x, lengths, enforce_sorted=False)`, the GRU, and
  `pad_packed_sequence(total_length=T)` back, the packing and unpacking
  inside the timed call. `uniform`: every length T; `random`: lengths drawn
  uniformly from 1..=T by `torch.randint(1, T + 1, (B,))` from a generator
  seeded with 5 (the same distribution as `gru-wgpu bench --lengths random`,
  not the same values: gru-wgpu draws from ChaCha8 with seed 5);
  `random-sorted`: the same draws sorted longest first (enforce_sorted=True).
  These rows carry `lengths`, `mean_length` and `valid_fraction`.

CPU only, torch.set_num_threads(--threads, default 2). Wall time per call is
the median over --iters calls after --warmup untimed ones; `fwd` runs under
torch.no_grad(), `fwdbwd` backpropagates a fixed random gradient of the
padded output (zero past each length for the packed rows, since
pad_packed_sequence writes zeros there). The flop count is gru-wgpu's, of the
padded shape, for every row.
"""

import argparse
import json
import sys

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# The flags, timing loop and JSON row shared with torch_gru.py (this script's
# folder is on sys.path when it runs).
from torch_gru import add_shape_args, add_timing_args, cpu_adapter, result_row, shapes_and_modes, time_calls

LENGTHS_SEED = 5


def draw_lengths(kind, batch, seq):
    if kind == "uniform":
        return torch.full((batch,), seq, dtype=torch.int64)
    g = torch.Generator().manual_seed(LENGTHS_SEED)
    lengths = torch.randint(1, seq + 1, (batch,), generator=g, dtype=torch.int64)
    if kind == "random-sorted":
        lengths = torch.sort(lengths, descending=True).values
    return lengths


def bench(shape, mode, kind, iters, warmup):
    batch, seq, inp, hidden, layers, bidir = shape
    torch.manual_seed(1)
    model = torch.nn.GRU(inp, hidden, num_layers=layers, bidirectional=bidir)
    d = 2 if bidir else 1
    x = (torch.rand(seq, batch, inp) * 2 - 1).requires_grad_(mode == "fwdbwd")
    go = torch.rand(seq, batch, d * hidden) * 2 - 1
    lengths = None if kind == "padded" else draw_lengths(kind, batch, seq)

    def call():
        if lengths is None:
            out, _ = model(x)
            return out
        packed = pack_padded_sequence(x, lengths, enforce_sorted=(kind == "random-sorted"))
        out, _ = model(packed)
        return pad_packed_sequence(out, total_length=seq)[0]

    def timed():
        if mode == "fwd":
            with torch.no_grad():
                call()
        else:
            model.zero_grad(set_to_none=True)
            x.grad = None
            call().backward(go)

    times, _ = time_calls(timed, iters, warmup)
    row = result_row(shape, mode, times, [], iters, warmup, "cpu", cpu_adapter())
    if lengths is not None:
        total = int(lengths.sum())
        row["lengths"] = kind
        row["mean_length"] = total / batch
        row["valid_fraction"] = total / (batch * seq)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = ["uniform", "random", "random-sorted"]

    def kind_list(s):
        out = [v for v in s.split(",") if v]
        bad = [v for v in out if v not in kinds]
        if bad or not out:
            raise argparse.ArgumentTypeError(f"unknown lengths {bad or [s]}; one or more of {', '.join(kinds)}")
        return out

    add_shape_args(ap)
    ap.add_argument("--lengths", type=kind_list, default=["random"],
                    help="packed variants after the padded one, comma-separated: uniform, random, random-sorted")
    ap.add_argument("--no-padded", action="store_true", help="skip the padded rows")
    add_timing_args(ap)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON object a line")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--iters and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(a.threads)
    shapes, modes = shapes_and_modes(a)
    if any(v < 1 for s in shapes for v in s[:5]):
        ap.error("every size must be at least 1")
    variants = ([] if a.no_padded else ["padded"]) + a.lengths
    if not a.json:
        print(f"{'mode':<7} {'shape':<28} {'lengths':<14} {'valid':>6} {'median ms':>10} {'min ms':>10} {'max ms':>10}")
    r = None
    for shape in shapes:
        for mode in modes:
            for kind in variants:
                r = bench(shape, mode, kind, a.iters, a.warmup)
                if a.json:
                    print(json.dumps(r), flush=True)
                else:
                    label = f"B={r['batch']} T={r['seq']} I={r['input']} H={r['hidden']}"
                    if r["layers"] > 1:
                        label += f" L={r['layers']}"
                    if r["bidirectional"]:
                        label += " bidir"
                    print(f"{mode:<7} {label:<28} {kind:<14} {r.get('valid_fraction', 1.0):>6.3f} "
                          f"{r['median_ms']:>10.2f} {r['min_ms']:>10.2f} {r['max_ms']:>10.2f}", flush=True)
    if not a.json and r is not None:
        print(f"# {r['adapter']}", file=sys.stderr)


if __name__ == "__main__":
    main()
