#!/usr/bin/env python3
"""PyTorch's own half-precision GRU against the float64 reference cases.

For every `gru-golden-v1` file given (default: tests/data/golden/*.safetensors
and tests/data/golden-extra/packed_*.safetensors), builds `torch.nn.GRU` with
the file's configuration, casts its float32 weights and inputs to float16 (and
to bfloat16), runs the forward and the backward of the file's loss
`sum(output * grad_output) + sum(h_n * grad_h_n)` on the CPU, and prints the
worst relative error `||ours - ref|| / ||ref||` over every tensor (output,
h_n, and the gradients of x, h0 and every parameter) against the file's
float64 results: the figure issue 15's f16 path has to match. JSON lines with
`--json`, else a Markdown table.

Needs only torch (reads safetensors by hand: an 8-byte header length, a JSON
header, raw little-endian data).
"""
import argparse
import glob
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        raw = bytearray(data[base + a : base + b])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return meta, tensors


def rel(ours, ref):
    ours = ours.detach().to(torch.float64)
    d = torch.linalg.vector_norm(ours - ref)
    r = torch.linalg.vector_norm(ref)
    return float(d / r) if r > 0 else float(d)


def run(meta, t, dtype):
    b = lambda k: meta.get(k) == "true"
    gru = torch.nn.GRU(
        int(meta["input_size"]),
        int(meta["hidden_size"]),
        num_layers=int(meta["num_layers"]),
        bias=b("bias"),
        batch_first=b("batch_first"),
        bidirectional=b("bidirectional"),
    ).to(dtype)
    with torch.no_grad():
        for name, p in gru.named_parameters():
            p.copy_(t[name].to(dtype))
    x = t["x"].to(dtype).requires_grad_(True)
    h0 = t["h0"].to(dtype).requires_grad_(True) if b("has_h0") else None
    lengths = t.get("lengths")
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=b("batch_first"), enforce_sorted=False
        )
        out, h_n = gru(packed, h0)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=b("batch_first"), total_length=int(meta["seq_len"])
        )
    else:
        out, h_n = gru(x, h0)
    loss = (out.float() * t["grad_output"]).sum() + (h_n.float() * t["grad_h_n"]).sum()
    loss.backward()
    errs = {"output": rel(out, t["output"]), "h_n": rel(h_n, t["h_n"]), "grad.x": rel(x.grad, t["grad.x"])}
    if h0 is not None:
        errs["grad.h0"] = rel(h0.grad, t["grad.h0"])
    for name, p in gru.named_parameters():
        errs["grad." + name] = rel(p.grad, t["grad." + name])
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob("tests/data/golden/*.safetensors")) + sorted(
        glob.glob("tests/data/golden-extra/packed_*.safetensors")
    )
    torch.manual_seed(0)
    rows = []
    for path in files:
        meta, t = load(path)
        if meta.get("format") != "gru-golden-v1" or "reset_form" in meta or "has_resets" in meta:
            print(f"skipped {path}: not a plain nn.GRU case", file=sys.stderr)
            continue
        row = {"case": path.split("/")[-1].removesuffix(".safetensors"), "torch": torch.__version__}
        for label, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            try:
                errs = run(meta, t, dtype)
                worst = max(errs, key=errs.get)
                row[label] = errs[worst]
                row[label + "_tensor"] = worst
            except Exception as e:  # a dtype the CPU build cannot run
                row[label] = None
                row[label + "_error"] = str(e).splitlines()[0]
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print("| case | PyTorch f16 (worst tensor) | PyTorch bf16 (worst tensor) |")
        print("|---|---:|---:|")
        fmt = lambda r, k: "error" if r[k] is None else f"{r[k]:.2e} ({r[k + '_tensor']})"
        for r in rows:
            print(f"| {r['case']} | {fmt(r, 'f16')} | {fmt(r, 'bf16')} |")


if __name__ == "__main__":
    main()
