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
import platform
import statistics
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

DEFAULT_SHAPES = [(1, 256, 64), (16, 64, 32), (16, 64, 64), (16, 64, 128), (16, 64, 256), (64, 64, 256)]
LENGTHS_SEED = 5


def flops(batch, seq, inp, hidden, layers, bidir, mode):
    d = 2 if bidir else 1
    fwd = 0.0
    for layer in range(layers):
        i_l = inp if layer == 0 else d * hidden
        fwd += d * 2.0 * seq * batch * 3 * hidden * (i_l + hidden)
    return fwd if mode == "fwd" else 3.0 * fwd


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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

    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                call()
        else:
            model.zero_grad(set_to_none=True)
            x.grad = None
            call().backward(go)
        ms = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(ms)
    med = statistics.median(times)
    row = {
        "framework": "torch",
        "impl": "cpu",
        "adapter": f"torch {torch.__version__} CPU ({torch.get_num_threads()} threads) on {cpu_name()}",
        "mode": mode,
        "batch": batch,
        "seq": seq,
        "input": inp,
        "hidden": hidden,
        "layers": layers,
        "bidirectional": bidir,
        "median_ms": med,
        "min_ms": min(times),
        "max_ms": max(times),
        "gpu_ms": None,
        "gflops": flops(batch, seq, inp, hidden, layers, bidir, mode) / (med * 1e-3) / 1e9,
        "seqs_per_s": batch / (med * 1e-3),
        "dispatches": None,
        "submissions": None,
        "iters": iters,
        "warmup": warmup,
    }
    if lengths is not None:
        total = int(lengths.sum())
        row["lengths"] = kind
        row["mean_length"] = total / batch
        row["valid_fraction"] = total / (batch * seq)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(v) for v in s.split(",")]
    kinds = ["uniform", "random", "random-sorted"]

    def kind_list(s):
        out = [v for v in s.split(",") if v]
        bad = [v for v in out if v not in kinds]
        if bad or not out:
            raise argparse.ArgumentTypeError(f"unknown lengths {bad or [s]}; one or more of {', '.join(kinds)}")
        return out

    ap.add_argument("--batch", type=ints)
    ap.add_argument("--seq", type=ints)
    ap.add_argument("--input", type=ints, help="default: the hidden size")
    ap.add_argument("--hidden", type=ints)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--mode", choices=["fwd", "fwdbwd", "both"], default="both")
    ap.add_argument("--lengths", type=kind_list, default=["random"],
                    help="packed variants after the padded one, comma-separated: uniform, random, random-sorted")
    ap.add_argument("--no-padded", action="store_true", help="skip the padded rows")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON object a line")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--iters and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(a.threads)
    custom = any(v is not None for v in (a.batch, a.seq, a.input, a.hidden, a.layers)) or a.bidirectional
    if custom:
        shapes = []
        for b in a.batch or [16]:
            for t in a.seq or [64]:
                for h in a.hidden or [128]:
                    for i in a.input or [h]:
                        shapes.append((b, t, i, h, a.layers or 1, a.bidirectional))
    else:
        shapes = [(b, t, h, h, 1, False) for (b, t, h) in DEFAULT_SHAPES]
    if any(v < 1 for s in shapes for v in s[:5]):
        ap.error("every size must be at least 1")
    modes = ["fwd", "fwdbwd"] if a.mode == "both" else [a.mode]
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
