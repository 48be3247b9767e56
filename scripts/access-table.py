#!/usr/bin/env python3
"""A Markdown table from the output of the access-pattern test
(`cargo test --release --test access_patterns -- --nocapture`): per kernel,
the worst sectors-per-load ratio of its operands' loads (the GEMMs' a and b,
the time loops' W_hh, states, gates, tape and gi) and the worst bank
conflict of its workgroup accesses. With two outputs (before, after), a cell
that changed shows `before -> after`.

usage: scripts/access-table.py AFTER.txt [BEFORE.txt]
"""
import re, sys

OPERANDS = {"a", "b", "w_hhT", "w_hh", "hs", "gates", "gi"}

def load(path):
    out, kernel = {}, None
    for line in open(path):
        if re.match(r"^(gemm|gru)\S*\.wgsl:\w+\(.*\)$", line.strip()):
            # RES_L is derived from RES_WG (present only after the change)
            kernel = re.sub(r"RES_L=\d+,|,RES_L=\d+(?=\))", "", line.strip())
            out[kernel] = [1.0, 1, []]
            continue
        m = re.match(r"^\s+(\S+) line\s+\d+\s+(workgroup|storage) x\d+\s+(?:(\d+)-way|sectors ([\d.]+)x)", line)
        if m and kernel:
            arr, space, way, sec = m.groups()
            f = out[kernel]
            if space == "workgroup":
                f[1] = max(f[1], int(way))
            elif arr in OPERANDS:
                f[0] = max(f[0], float(sec))
    return out

def cell(a, b, fmt):
    if b is None or fmt(a) == fmt(b):
        return fmt(a)
    return f"{fmt(b)} -> {fmt(a)}"

after = load(sys.argv[1])
before = load(sys.argv[2]) if len(sys.argv) > 2 else {}
print("| kernel | operand loads: sectors / fewest | workgroup: bank conflict |")
print("|---|---|---|")
for k, (sec, way, _) in after.items():
    b = before.get(k)
    print(f"| `{k}` | {cell(sec, b and b[0], lambda x: f'{x:.2f}x')} | "
          f"{cell(way, b and b[1], lambda x: f'{x}-way')} |")
missing = [k for k in before if k not in after]
if missing:
    print()
    print("Before only: " + ", ".join(f"`{k}`" for k in missing))
