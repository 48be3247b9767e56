#!/usr/bin/env python3
"""Write a reference case for `gru-wgpu verify` from any torch.nn.GRU.

The file is safetensors in the format `gru-golden-v1` (tests/data/golden/README.md):
the float32 inputs, parameters and upstream gradients, and what PyTorch computes
from exactly those float32 values in float64: output, h_n and the gradients of
loss = sum(output * grad_output) + sum(h_n * grad_h_n).

From the command line, with a random GRU or your own weights:

    python3 scripts/make_reference.py --input-size 32 --hidden-size 64 --num-layers 2 \
        --bidirectional --seq-len 24 --batch 8 mine.safetensors
    python3 scripts/make_reference.py ... --state-dict gru.safetensors mine.safetensors

or from Python, with a model you already have:

    from make_reference import write_reference
    write_reference(model, "mine.safetensors", seq_len=24, batch=8)

Then: cargo run --release -- verify mine.safetensors
"""

import argparse

import torch
from safetensors.torch import load_file, save_file


def write_reference(model: torch.nn.GRU, path: str, seq_len: int, batch: int, has_h0: bool = True, seed: int = 0):
    """Run `model` forward and backward in float64 on random float32 inputs and write the case to `path`."""
    if not isinstance(model, torch.nn.GRU):
        raise TypeError("model must be a torch.nn.GRU")
    g = torch.Generator().manual_seed(seed)
    d = 2 if model.bidirectional else 1
    L, H, I = model.num_layers, model.hidden_size, model.input_size
    x_shape = (batch, seq_len, I) if model.batch_first else (seq_len, batch, I)
    o_shape = (batch, seq_len, d * H) if model.batch_first else (seq_len, batch, d * H)
    s_shape = (L * d, batch, H)
    x = torch.rand(x_shape, generator=g, dtype=torch.float32) * 2 - 1
    h0 = torch.rand(s_shape, generator=g, dtype=torch.float32) * 2 - 1 if has_h0 else None
    grad_output = torch.rand(o_shape, generator=g, dtype=torch.float32) * 2 - 1
    grad_h_n = torch.rand(s_shape, generator=g, dtype=torch.float32) * 2 - 1

    # The parameters as float32, then float64 copies of exactly those values.
    params32 = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    ref = torch.nn.GRU(I, H, num_layers=L, bias=model.bias, batch_first=model.batch_first,
                       bidirectional=model.bidirectional, dtype=torch.float64)
    ref.load_state_dict({k: v.to(torch.float64) for k, v in params32.items()})
    ref.train(False)  # no dropout: the reference is deterministic

    x64 = x.to(torch.float64).requires_grad_(True)
    h064 = h0.to(torch.float64).requires_grad_(True) if has_h0 else None
    output, h_n = ref(x64, h064) if has_h0 else ref(x64)
    loss = (output * grad_output.to(torch.float64)).sum() + (h_n * grad_h_n.to(torch.float64)).sum()
    loss.backward()

    tensors = {"x": x, "grad_output": grad_output, "grad_h_n": grad_h_n}
    if has_h0:
        tensors["h0"] = h0
    tensors.update(params32)
    tensors["output"] = output.detach()
    tensors["h_n"] = h_n.detach()
    tensors["grad.x"] = x64.grad
    if has_h0:
        tensors["grad.h0"] = h064.grad
    for name, p in ref.named_parameters():
        tensors["grad." + name] = p.grad
    metadata = {
        "format": "gru-golden-v1",
        "input_size": str(I),
        "hidden_size": str(H),
        "num_layers": str(L),
        "bidirectional": str(model.bidirectional).lower(),
        "batch_first": str(model.batch_first).lower(),
        "bias": str(model.bias).lower(),
        "seq_len": str(seq_len),
        "batch": str(batch),
        "has_h0": str(has_h0).lower(),
        "loss": "sum(output*grad_output) + sum(h_n*grad_h_n)",
        "reference": f"torch {torch.__version__} nn.GRU in float64 on the float32 values stored here",
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", type=int, required=True)
    ap.add_argument("--hidden-size", type=int, required=True)
    ap.add_argument("--num-layers", type=int, default=1)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--batch-first", action="store_true")
    ap.add_argument("--no-bias", action="store_true")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--no-h0", action="store_true", help="h0 is absent (zeros), as when nn.GRU gets none")
    ap.add_argument("--state-dict", help="load these weights (safetensors of model.state_dict()) instead of random ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = torch.nn.GRU(a.input_size, a.hidden_size, num_layers=a.num_layers, bias=not a.no_bias,
                         batch_first=a.batch_first, bidirectional=a.bidirectional)
    if a.state_dict:
        model.load_state_dict(load_file(a.state_dict))
    write_reference(model, a.out, a.seq_len, a.batch, has_h0=not a.no_h0, seed=a.seed)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
