#!/usr/bin/env python3
"""Write tests/data/torch_optim.json: what torch.optim's SGD, Adam and AdamW and
torch.nn.utils.clip_grad_norm_ do, in float32, to fixed parameters and gradients.
The crate's optimisers (CPU and GPU) are tested against it."""

import json
import torch

torch.manual_seed(0)
n, steps = 23, 4
p0 = (torch.rand(n) * 2 - 1).tolist()
grads = [(torch.rand(n) * 2 - 1).tolist() for _ in range(steps)]

cases = []
configs = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.005)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.003, weight_decay=0.01)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.005, betas=(0.5, 0.9), eps=1e-6)),
]
for kind, kw in configs:
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]([p], **kw)
    after = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        after.append(p.detach().tolist())
    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    cases.append({"kind": kind, "options": kw, "after": after})

tensors = [(torch.rand(k) * 2 - 1) for k in (5, 40, 1)]
clip = []
for max_norm in (0.5, 100.0):
    gs = [t.clone().requires_grad_(False) for t in tensors]
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
    for q, g in zip(params, gs):
        q.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    clip.append({"max_norm": max_norm, "total": total.item(), "after": [q.grad.tolist() for q in params]})

out = {
    "torch": torch.__version__,
    "params": p0,
    "grads": grads,
    "cases": cases,
    "clip": {"grads": [t.tolist() for t in tensors], "runs": clip},
}
with open("tests/data/torch_optim.json", "w") as f:
    json.dump(out, f, indent=1)
print("wrote tests/data/torch_optim.json")
