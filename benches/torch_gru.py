#!/usr/bin/env python3
"""The shapes of `gru-wgpu bench` through PyTorch's nn.GRU, with the same JSON fields.

    python3 benches/torch_gru.py --json > torch.jsonl             # the default shapes
    python3 benches/torch_gru.py --batch 16 --seq 64 --hidden 128 --mode fwdbwd
    cargo run --release -- bench --compare torch.jsonl            # side by side, with the ratio

Runs on CUDA where present (cuDNN's GRU), else on the CPU (--device forces one).
Each call is waited to completion (torch.cuda.synchronize on CUDA); wall time per
call is the median over --iters calls after --warmup untimed ones. gpu_ms is the
median of CUDA events around each call where on CUDA, else null. The flop count is
gru-wgpu's: per layer-direction forward 2*T*B*3H*(I_l + H), backward twice that.
"""

# benches/torch_packed.py imports its flags, timing loop and JSON row from here;
# this file stays standalone (scripts/gpu-check.sh runs it copied alone).

import argparse
import json
import platform
import statistics
import sys
import time

import torch

DEFAULT_SHAPES = [(1, 256, 64), (16, 64, 32), (16, 64, 64), (16, 64, 128), (16, 64, 256), (64, 64, 256)]


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


def time_calls(call, iters, warmup, cuda=False):
    """Runs call() warmup + iters times; returns the wall times (ms) of the last
    iters calls and, on CUDA, their CUDA event times (ms, else an empty list).
    On CUDA each call is waited to completion (torch.cuda.synchronize)."""
    times, gpu_times = [], []
    for i in range(warmup + iters):
        if cuda:
            start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if cuda:
            start_ev.record()
        call()
        if cuda:
            end_ev.record()
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(ms)
            if cuda:
                gpu_times.append(start_ev.elapsed_time(end_ev))
    return times, gpu_times


def result_row(shape, mode, times, gpu_times, iters, warmup, impl, adapter, precision="f32"):
    """The JSON fields of `gru-wgpu bench --json` for one timed shape and mode
    (`precision`: "f32", or "f16" for a half-precision model and data)."""
    batch, seq, inp, hidden, layers, bidir = shape
    med = statistics.median(times)
    return {
        "framework": "torch",
        "impl": impl,
        "adapter": adapter,
        "mode": mode,
        "batch": batch,
        "seq": seq,
        "input": inp,
        "hidden": hidden,
        "layers": layers,
        "bidirectional": bidir,
        "precision": precision,
        "median_ms": med,
        "min_ms": min(times),
        "max_ms": max(times),
        "gpu_ms": statistics.median(gpu_times) if gpu_times else None,
        "gflops": flops(batch, seq, inp, hidden, layers, bidir, mode) / (med * 1e-3) / 1e9,
        "seqs_per_s": batch / (med * 1e-3),
        "dispatches": None,
        "submissions": None,
        "iters": iters,
        "warmup": warmup,
    }


def cpu_adapter():
    return f"torch {torch.__version__} CPU ({torch.get_num_threads()} threads) on {cpu_name()}"


def bench(shape, mode, device, iters, warmup, dtype=torch.float32):
    batch, seq, inp, hidden, layers, bidir = shape
    torch.manual_seed(1)
    model = torch.nn.GRU(inp, hidden, num_layers=layers, bidirectional=bidir).to(device, dtype)
    d = 2 if bidir else 1
    x = (torch.rand(seq, batch, inp, device=device, dtype=dtype) * 2 - 1).requires_grad_(mode == "fwdbwd")
    go = torch.rand(seq, batch, d * hidden, device=device, dtype=dtype) * 2 - 1
    cuda = device.type == "cuda"

    def call():
        if mode == "fwd":
            with torch.no_grad():
                out, _ = model(x)
        else:
            model.zero_grad(set_to_none=True)
            out, _ = model(x)
            out.backward(go)

    times, gpu_times = time_calls(call, iters, warmup, cuda)
    if cuda:
        tf32 = "on" if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32 else "off"
        adapter = f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} on {torch.cuda.get_device_name(device)}, TF32 {tf32}"
    else:
        adapter = cpu_adapter()
    precision = "f16" if dtype == torch.float16 else "f32"
    return result_row(shape, mode, times, gpu_times, iters, warmup, "gpu" if cuda else "cpu", adapter, precision)


def add_shape_args(ap):
    """--batch, --seq, --input, --hidden (comma-separated lists), --layers,
    --bidirectional and --mode."""
    ints = lambda s: [int(v) for v in s.split(",")]
    ap.add_argument("--batch", type=ints)
    ap.add_argument("--seq", type=ints)
    ap.add_argument("--input", type=ints, help="default: the hidden size")
    ap.add_argument("--hidden", type=ints)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--mode", choices=["fwd", "fwdbwd", "both"], default="both")


def add_timing_args(ap):
    """--iters and --warmup."""
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)


def shapes_and_modes(a):
    """The (batch, seq, input, hidden, layers, bidirectional) shapes and the
    modes the parsed flags of add_shape_args ask for: DEFAULT_SHAPES without
    any shape flag, else every combination of the lists (batch 16, seq 64,
    hidden 128, input the hidden size and one layer where not given)."""
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
    modes = ["fwd", "fwdbwd"] if a.mode == "both" else [a.mode]
    return shapes, modes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_args(ap)
    add_timing_args(ap)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--json", action="store_true", help="one JSON object a line")
    ap.add_argument("--no-tf32", action="store_true",
                    help="float32 products on CUDA (cuDNN and matmul TF32 off), as gru-wgpu computes them")
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                    help="the model's and the data's dtype (float16: cuDNN's half-precision GRU, "
                    "as `gru-wgpu bench --precision f16`); the JSON's precision says which")
    a = ap.parse_args()
    dtype = torch.float16 if a.dtype == "float16" else torch.float32
    if a.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if a.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(a.device)
    shapes, modes = shapes_and_modes(a)
    if not a.json:
        print(f"{'mode':<7} {'shape':<28} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'GFLOP/s':>9} {'seqs/s':>10}")
    for shape in shapes:
        for mode in modes:
            r = bench(shape, mode, device, a.iters, a.warmup, dtype)
            if a.json:
                print(json.dumps(r), flush=True)
            else:
                label = f"B={r['batch']} T={r['seq']} I={r['input']} H={r['hidden']}"
                print(f"{mode:<7} {label:<28} {r['median_ms']:>10.2f} {r['min_ms']:>10.2f} {r['max_ms']:>10.2f} "
                      f"{r['gflops']:>9.2f} {r['seqs_per_s']:>10.1f}", flush=True)
    if not a.json:
        print(f"# {r['adapter']}", file=sys.stderr)


if __name__ == "__main__":
    main()
