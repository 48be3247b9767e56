#!/usr/bin/env python3
"""Recomputes rb_basic's gradients with PyTorch autograd in float64 from the
file's own float32 tensors (inputs, weights, and the upstream gradients
grad_output and grad_h_n cast to float64), in the reset-before form, and
prints the relative error of the forward and of grad.x against the file.

Usage: python3 scripts/rb_grad_check.py [tests/data/golden-extra/rb_basic.safetensors]

A check of the data, not part of the test suite: it needs torch only (no
numpy, no safetensors package). On 2026-11-28, on the first version of
rb_basic, it printed forward 0.0, grad.x 3.5e-08: that file's gradients
were not those of its stored upstream gradients (they came from the float64
values before rounding). On the regenerated file (2026-12-02) it prints
forward 0.0, grad.x 0.0.
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(b[8 + n + s : 8 + n + e]), dtype=DTYPES[v["dtype"]])
        out[k] = t.reshape(v["shape"])
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden-extra/rb_basic.safetensors"
    d = load(path)
    f64 = lambda k: d[k].to(torch.float64).clone().requires_grad_(True)
    x, h0 = f64("x"), f64("h0")
    wih, whh, bih, bhh = (f64(k) for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    H = whh.shape[1]
    h, outs = h0[0], []
    for t in range(x.shape[0]):
        gi = x[t] @ wih.T + bih
        r = torch.sigmoid(gi[:, :H] + h @ whh[:H].T + bhh[:H])
        z = torch.sigmoid(gi[:, H : 2 * H] + h @ whh[H : 2 * H].T + bhh[H : 2 * H])
        n = torch.tanh(gi[:, 2 * H :] + (r * h) @ whh[2 * H :].T + bhh[2 * H :])
        h = (1 - z) * n + z * h
        outs.append(h)
    out = torch.stack(outs)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    print(f"forward: {rel(out.detach(), d['output']):.1e}")
    loss = (out * d["grad_output"].double()).sum() + (h[None] * d["grad_h_n"].double()).sum()
    (gx,) = torch.autograd.grad(loss, [x])
    print(f"grad.x: {rel(gx, d['grad.x']):.1e}")


if __name__ == "__main__":
    main()
