#!/usr/bin/env python3
"""A Markdown table from kernel-stats JSON lines: the f32 pipelines a GPU's
planner chooses among (each GEMM kernel, each time loop of the forward with
its tape and of the backward, plain and reset-before), per target
`VGPRs/waves per SIMD`, with spilled registers and scratch bytes per wave
where there are any. With two files (before, after), a cell that changed
shows `before -> after`.

usage: scripts/kernel-stats-table.py AFTER.jsonl [BEFORE.jsonl]
"""
import json, re, sys

def norm(kernel):
    """A pipeline's name without the constants the host derives from the
    others (RES_L from RES_WG), so that builds before and after match."""
    return re.sub(r'RES_L=\d+,', '', kernel)

def load(path):
    recs = {}
    for line in open(path):
        r = json.loads(line)
        recs[(norm(r['kernel']), r['precision'], r['family'], r['wave'])] = r
    return recs

def cell(r):
    if r is None:
        return ''
    if r.get('error'):
        return 'error'
    s = r['stats']
    c = f"{s['VGPRs']:g}/{s['Subgroups per SIMD']:g}"
    sp = s.get('Spilled VGPRs', 0) + s.get('Spilled SGPRs', 0)
    if sp:
        c += f" spill {sp:g}"
    if s.get('Scratch size', 0):
        c += f" scratch {s['Scratch size'] / 1024:g} KiB"
    return c

# The planner's choices on a GPU (not the CPU-only variants: W_PRIVATE, G=4).
KERNELS = [
    'gemm.wgsl:main(TRANS_A=0,TRANS_B=1)',
    'gemm.wgsl:tiled(TRANS_A=0,TRANS_B=1,BM=64,BN=64,BK=8)',
    'gemm.wgsl:tiled(TRANS_A=0,TRANS_B=1,BM=128,BN=128,BK=16)',
    'gemm_subgroup.wgsl:shared_a(TRANS_A=0,TRANS_B=1,G=8)',
    'gemm.wgsl:tiled(TRANS_A=1,TRANS_B=0,BM=128,BN=128,BK=16)',
    'gemm.wgsl:tiled(TRANS_A=1,TRANS_B=0,BM=128,BN=128,BK=16,VEC4=1)',
    'gemm_subgroup.wgsl:shared_a(TRANS_A=1,TRANS_B=0,G=8)',
    'gemm_subgroup.wgsl:shared_a(TRANS_A=1,TRANS_B=0,G=8,VEC4=1)',
    'gru_forward.wgsl:step(TAPE=1)',
    'gru_forward.wgsl:step(PRECOMPUTED=1,STORAGE_GH=1,TAPE=1)',
    'gru_forward.wgsl:splitk(TAPE=1)',
    'gru_forward.wgsl:sequence(W_PRIVATE=0,TAPE=1)',
    'gru_forward.wgsl:resident(RES_WG=1024,TAPE=1)',
    'gru_forward.wgsl:resident(RES_WG=256,RB=1,TAPE=1)',
    'gru_backward.wgsl:step',
    'gru_backward.wgsl:splitk',
    'gru_backward.wgsl:sequence(W_PRIVATE=0)',
    'gru_backward.wgsl:resident(RES_WG=1024)',
    'gru_backward.wgsl:resident(RES_WG=256,RB=1)',
]

def main():
    after = load(sys.argv[1])
    before = load(sys.argv[2]) if len(sys.argv) > 2 else None
    targets = []
    for (_, _, f, w) in after:
        if (f, w) not in targets:
            targets.append((f, w))
    known = {k for (k, _, _, _) in after}
    print('| pipeline (f32) | ' + ' | '.join(f'{f} w{w}' for f, w in targets) + ' |')
    print('|---|' + '---|' * len(targets))
    for k in KERNELS:
        if k not in known:
            # A kernel named without its default constants: match by prefix.
            cands = sorted(x for x in known if x.startswith(k.rstrip(')')))
            if not cands:
                continue
            k = cands[0]
        cells = []
        for f, w in targets:
            a = cell(after.get((k, 'f32', f, w)))
            if before is not None:
                b = cell(before.get((k, 'f32', f, w)))
                if b != a:
                    a = f'{b} -> {a}'
            cells.append(a)
        print(f'| `{k}` | ' + ' | '.join(cells) + ' |')

main()
