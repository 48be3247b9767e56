#!/usr/bin/env python3
"""The table on paper for the three GPU target shapes (BENCHMARKS.md): per
forward time loop, per step, the bytes it reads and writes in global memory,
its FLOPs, the dispatches of a forward call, AMD's compiler's figures of its
kernel (from kernel-stats JSON lines: NAVI21 and GFX1100, wave32), and what
that implies on an H100 (3.35 TB/s, 67 TFLOP/s f32) as a lower bound on the
step's time. An estimate from the kernels' index arithmetic, not a
measurement: every figure comes from the formulas below.

Per step of a layer (f32, one direction, B rows, hidden size H):
  FLOPs          2·B·H·3H (the recurrent product; the gate math is ~20·B·H)
  W_hh reads     step, splitk, sequence: once per 4 rows, ceil(B/4)·3H²·4 bytes
                 products: once per 64-row tile, ceil(B/64)·3H²·4, plus h read
                 once per 64 columns of gh, B·H·4·ceil(3H/64), and gh written
                 and read back, 2·B·3H·4
                 resident: none (held in registers for the call)
  every loop     gi read B·3H·4; h' written to the states and the output,
                 2·B·H·4; the tape 4·B·H·4; the state read back, B·H·4
                 (not by sequence or resident, which keep it in workgroup memory)
  dispatches     a forward: 1 (input projection) + T (step, splitk),
                 + 2T (products), + 1 (sequence, resident, at these T)
The H100 bound of a step: max(bytes / 3.35e12, FLOPs / 67e12), with W_hh's
repeated reads counted at DRAM bandwidth although it fits in L2 (50 MB), so
the memory bound is pessimistic where W_hh is re-read; dispatches are listed,
not priced.

usage: scripts/paper-table.py KERNEL_STATS.jsonl
"""
import json, math, sys

SHAPES = [(16, 256, 64), (64, 100, 512), (256, 64, 1024)]
SEQ_HMAX = 256
RES_HMAX = {1024: 113, 512: 128, 256: 85}
KERNELS = {
    'step': 'gru_forward.wgsl:step(TAPE=1)',
    'splitk': 'gru_forward.wgsl:splitk(TAPE=1)',
    'products': 'gru_forward.wgsl:step(PRECOMPUTED=1,STORAGE_GH=1,TAPE=1)',
    'sequence': 'gru_forward.wgsl:sequence(W_PRIVATE=0,TAPE=1)',
    'resident': 'gru_forward.wgsl:resident(RES_WG=1024,RES_L=13,TAPE=1)',
}
GEMM = 'gemm.wgsl:tiled(TRANS_A=0,TRANS_B=1,BM=64,BN=64,BK=8)'


def stats(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if r['precision'] == 'f32' and r['wave'] == 32 and not r.get('error'):
            out[(r['kernel'], r['family'])] = r['stats']
    return out


def amd(st, kernel):
    cells = []
    for fam in ('NAVI21', 'GFX1100'):
        s = st.get((kernel, fam))
        if s is None:
            cells.append('-')
            continue
        c = f"{s['VGPRs']:g}/{s['Subgroups per SIMD']:g}"
        if s.get('Scratch size', 0) or s.get('Spilled VGPRs', 0):
            c += ' (spills)'
        cells.append(c)
    return ' '.join(cells)


def row(plan, b, t, h):
    w = 3 * h * h * 4
    io = b * 3 * h * 4 + 2 * b * h * 4 + 4 * b * h * 4
    if plan in ('step', 'splitk'):
        return math.ceil(b / 4) * w + io + b * h * 4, 1 + t
    if plan == 'sequence':
        return math.ceil(b / 4) * w + io, 2
    if plan == 'products':
        gemm = math.ceil(b / 64) * w + b * h * 4 * math.ceil(3 * h / 64) + 2 * b * 3 * h * 4
        return gemm + io + b * h * 4, 1 + 2 * t
    if plan == 'resident':
        return io, 2


def applies(plan, h):
    if plan == 'sequence':
        return h <= SEQ_HMAX
    if plan == 'resident':
        return h <= RES_HMAX[1024]
    return True


def main():
    st = stats(sys.argv[1])
    print('| shape | loop | MB a step | MFLOP a step | dispatches a forward | '
          'AMD VGPRs/waves (NAVI21 GFX1100, w32) | H100 bound a step (µs) | bound by |')
    print('|---|---|---:|---:|---:|---|---:|---|')
    for b, t, h in SHAPES:
        flops = 2 * b * h * 3 * h
        for plan in KERNELS:
            shape = f'B={b} T={t} I=H={h}'
            if not applies(plan, h):
                print(f'| {shape} | {plan} | - | - | - | - | - | does not apply |')
                continue
            by, disp = row(plan, b, t, h)
            mem = by / 3.35e12 * 1e6
            comp = flops / 67e12 * 1e6
            print(f'| {shape} | {plan} | {by / 1e6:.2f} | {flops / 1e6:.1f} | {disp} | '
                  f'{amd(st, KERNELS[plan])} | {max(mem, comp):.2f} | '
                  f"{'memory' if mem >= comp else 'FLOPs'} |")
    print()
    print(f'The input projection (once a call, `{GEMM}` and its 128 x 128 sibling): '
          '2·T·B·I·3H FLOPs: ' + ', '.join(
              f'{2 * t * b * h * 3 * h / 1e9:.2f} GFLOP ({2 * t * b * h * 3 * h / 67e12 * 1e6:.0f} µs at 67 TFLOP/s)'
              for b, t, h in SHAPES) + '.')


if __name__ == '__main__':
    main()
