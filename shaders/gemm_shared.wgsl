// gemm_shared.wgsl: what gemm.wgsl and gemm_subgroup.wgsl share; the host
// composes it after each of them (src/gpu/pipeline.rs `compose`), so it is
// not a shader of its own.
//
// The parameters, buffers and operand addressing of C = op(A) · op(B) (+ bias):
//
//   A(m, k) = a[base + m*lda + k]   or  a[base + k*lda + m]   (TRANS_A)
//   B(k, n) = b[base + k*ldb + n]   or  b[base + n*ldb + k]   (TRANS_B)
//   base    = a_off + z*a_batch (b_off + z*b_batch) for batch z = wid.z / n_split
//   C[z][s](m, n) at c[c_off + z*c_batch + s*c_split + m*ldc + n], split s = wid.z % n_split,
//           summing k in [s*k_chunk, min(K, (s+1)*k_chunk))
//
// Buffers: a (SA), b (SB), bias (N, SB) read; c (f32) written; a4, b4: a and b
// again, as vec4s (the tiled kernels with VEC4 read them). And the parts of
// the tiled kernels (`tiled`, `shared_a`) that are the same in both: B's tile
// staged k-major in workgroup memory (Bs[k][n], vec4s along n; BK, BN are the
// including file's override constants), the TM x TN register tile of a
// thread (rows (i*16 + ty)*4 + r, columns (j*16 + tx)*4 + c, i < TM4, j < TN4),
// its fmas for one k, and its store with the bias (added by split 0 only).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// VEC4 (the operands stored along m or n read as vec4s, `operand4`) is the
// including file's override, declared before its workgroup arrays: naga
// wants the arrays' unnamed overrides after every named one.

struct Params {
    m: u32, n: u32, k: u32, k_chunk: u32,
    lda: u32, ldb: u32, ldc: u32, n_split: u32,
    a_off: u32, b_off: u32, c_off: u32, bias_off: u32,
    a_batch: u32, b_batch: u32, c_batch: u32, c_split: u32,
    flags: u32, gx: u32, gy: u32, gz: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> a: array<SA>;
@group(0) @binding(2) var<storage, read> b: array<SB>;
@group(0) @binding(3) var<storage, read> bias: array<SB>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<SA>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<SB>>;

// Where a workgroup works: its (offset) id, batch z and split s, the k range
// [k0, k1) of the split, and the bases of A, B and C.
struct GemmAt {
    wid: vec3<u32>, batch: u32, split: u32, k0: u32,
    k1: u32, abase: u32, bbase: u32, cbase: u32,
}

fn gemm_at(wid_in: vec3<u32>) -> GemmAt {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let batch = wid.z / P.n_split;
    let split = wid.z % P.n_split;
    let k0 = split * P.k_chunk;
    let k1 = min(P.k, k0 + P.k_chunk);
    return GemmAt(wid, batch, split, k0, k1, P.a_off + batch * P.a_batch, P.b_off + batch * P.b_batch,
                  P.c_off + batch * P.c_batch + split * P.c_split);
}

fn a_at(base: u32, m: u32, k: u32) -> f32 {
    if (TRANS_A) {
        return f32(a[base + k * P.lda + m]);
    }
    return f32(a[base + m * P.lda + k]);
}

fn b_at(base: u32, k: u32, n: u32) -> f32 {
    if (TRANS_B) {
        return f32(b[base + n * P.ldb + k]);
    }
    return f32(b[base + k * P.ldb + n]);
}

// A(m, k), 0 outside rows [0, M) and the step's k range [.., k1).
fn a_el(base: u32, m: u32, k: u32, k1: u32) -> f32 {
    let v = a_at(base, min(m, P.m - 1u), min(k, P.k - 1u));
    return select(0.0, v, m < P.m && k < k1);
}

// B(k, n), 0 outside columns [0, N) and the step's k range [.., k1).
fn b_el(base: u32, k: u32, n: u32, k1: u32) -> f32 {
    let v = b_at(base, min(k, P.k - 1u), min(n, P.n - 1u));
    return select(0.0, v, n < P.n && k < k1);
}

// ---------------------------------------------------------------------------
// The tiled kernels. This file comes after the including one because of
// naga (wgpu 30): an array sized by override constants (Bs) gets an unnamed
// override, which must come after every named one (BM, BN, BK, TM4, TN4, G:
// the including file's).

// The fmas of one k: acc[(i*4 + r)*TN4 + j] += av[i][r] * bv[j].
fn fma_tile(acc: ptr<function, array<vec4<f32>, 16>>, av: ptr<function, array<vec4<f32>, 2>>,
            bv: ptr<function, array<vec4<f32>, 2>>) {
    for (var i = 0u; i < TM4; i = i + 1u) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let s = vec4<f32>((*av)[i][r]);
            for (var j = 0u; j < TN4; j = j + 1u) {
                let t = (i * 4u + r) * TN4 + j;
                (*acc)[t] = fma(s, (*bv)[j], (*acc)[t]);
            }
        }
    }
}

// Stores the register tile of thread (tx, ty) of the block at (bm0, bn0),
// adding the bias where flags & 1 and this is split 0.
fn store_tile(acc: ptr<function, array<vec4<f32>, 16>>, at: GemmAt, bm0: u32, bn0: u32, tx: u32, ty: u32) {
    let has_bias = (P.flags & 1u) != 0u && at.split == 0u;
    for (var j = 0u; j < TN4; j = j + 1u) {
        let n = bn0 + (j * 16u + tx) * 4u;
        var bv = vec4<f32>(0.0);
        if (has_bias) {
            let nl = P.n - 1u;
            bv = vec4<f32>(f32(bias[P.bias_off + min(n, nl)]), f32(bias[P.bias_off + min(n + 1u, nl)]),
                           f32(bias[P.bias_off + min(n + 2u, nl)]), f32(bias[P.bias_off + min(n + 3u, nl)]));
        }
        for (var i = 0u; i < TM4; i = i + 1u) {
            for (var r = 0u; r < 4u; r = r + 1u) {
                let m = bm0 + (i * 16u + ty) * 4u + r;
                var v = (*acc)[(i * 4u + r) * TN4 + j];
                if (has_bias) {
                    v = v + bv;
                }
                store4(at.cbase, m, n, v);
            }
        }
    }
}

// Columns n .. n+3 of row m of C, those inside C.
fn store4(cbase: u32, m: u32, n: u32, v: vec4<f32>) {
    if (m >= P.m) {
        return;
    }
    let row = cbase + m * P.ldc;
    if (n + 4u <= P.n) {
        c[row + n] = v.x; c[row + n + 1u] = v.y; c[row + n + 2u] = v.z; c[row + n + 3u] = v.w;
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (n + q < P.n) {
            c[row + n + q] = v[q];
        }
    }
}

// Staging index e of the A tile -> (kk, m4): As[kk][m4] holds A(bm0 + 4*m4 + r,
// kt + kk), r < 4. Where k is contiguous in memory, neighbouring threads take
// neighbouring k; where m is, neighbouring m4. (`gemm.wgsl`'s `tiled` stages A.)
fn a_pos(e: u32) -> vec2<u32> {
    if (TRANS_A) {
        return vec2<u32>(e / (BM / 4u), e % (BM / 4u));
    }
    return vec2<u32>(e % BK, e / BK);
}

// Staging index e of the B tile -> (kk, n4): Bs[kk][n4] holds B(kt + kk,
// bn0 + 4*n4 + c), c < 4. Where k is contiguous in memory, neighbouring
// threads take neighbouring k; where n is, neighbouring n4.
fn b_pos(e: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>(e % BK, e / BK);
    }
    return vec2<u32>(e / (BN / 4u), e % (BN / 4u));
}

// The vec4 of A's rows mn..mn+3 at column k (`a_side`), or of B's columns
// mn..mn+3 at row k (zeros outside, as `a_el` and `b_el`). With VEC4, where
// these four are contiguous in memory (`contiguous_mn`) and all inside, one
// vec4 load of a4 or b4 (mn is a multiple of 4 and the host checked the
// rest); else four scalar loads.
fn operand4(a_side: bool, base: u32, mn: u32, k: u32, k1: u32) -> vec4<f32> {
    if (VEC4 && contiguous_mn(a_side) && k < k1 && mn + 4u <= select(P.n, P.m, a_side)) {
        if (a_side) {
            return vec4<f32>(a4[(base + k * P.lda + mn) / 4u]);
        }
        return vec4<f32>(b4[(base + k * P.ldb + mn) / 4u]);
    }
    if (a_side) {
        return vec4<f32>(a_el(base, mn, k, k1), a_el(base, mn + 1u, k, k1),
                         a_el(base, mn + 2u, k, k1), a_el(base, mn + 3u, k, k1));
    }
    return vec4<f32>(b_el(base, k, mn, k1), b_el(base, k, mn + 1u, k1),
                     b_el(base, k, mn + 2u, k1), b_el(base, k, mn + 3u, k1));
}

// Whether A (`a_side`) or B is stored along m or n: A stored (K, M)
// (TRANS_A), B stored (K, N) (not TRANS_B).
fn contiguous_mn(a_side: bool) -> bool {
    if (a_side) {
        return TRANS_A;
    }
    return !TRANS_B;
}

// Whether the staging of A's tile (`a_side`) or B's walks the operand's
// contiguous dimension m or n by scalars: where it is stored along m or n
// and not read as vec4s (VEC4). Then thread li takes the tile's scalars
// f = li + 256*w (w < 8), at (kk, mn) = (f / width, f % width) with width BM
// or BN: 32 neighbouring threads read 128 consecutive bytes, whole 32-byte
// sectors (four scalar loads of one vec4 a thread would touch 4 times the
// sectors per instruction: `tests/access_patterns.rs`). Else the vec4s
// e = li + 256*u placed by `a_pos` or `b_pos`: neighbouring threads on
// neighbouring k where k is contiguous, on neighbouring vec4s of m or n
// (one 16-byte load each) with VEC4.
fn along_mn(a_side: bool) -> bool {
    return contiguous_mn(a_side) && !VEC4;
}

// This thread's share of A's tile (`a_side`, block rows from mn0) or B's
// (block columns from mn0) of the K step at kt, into registers: see
// `along_mn` (scalar w in component w % 4 of pr[w / 4]); else staging
// indices li and li + 256 (at most 2 * 256 vec4s), placed by `a_pos` or
// `b_pos`.
fn load_part(a_side: bool, pr: ptr<function, array<vec4<f32>, 2>>, li: u32, base: u32, mn0: u32,
             kt: u32, k1: u32) {
    let width = select(BN, BM, a_side);
    if (along_mn(a_side)) {
        for (var w = 0u; w < 8u; w = w + 1u) { // unroll
            let f = li + 256u * w;
            if (f < BK * width) {
                let kk = f / width;
                let mn = mn0 + f % width;
                var v = 0.0;
                if (a_side) {
                    v = a_el(base, mn, kt + kk, k1);
                } else {
                    v = b_el(base, kt + kk, mn, k1);
                }
                (*pr)[w / 4u][w % 4u] = v;
            }
        }
        return;
    }
    let tile4s = BK * (width / 4u);
    for (var u = 0u; u < 2u; u = u + 1u) {
        let e = li + 256u * u;
        if (e < tile4s) {
            var p = b_pos(e);
            if (a_side) {
                p = a_pos(e);
            }
            (*pr)[u] = operand4(a_side, base, mn0 + 4u * p.y, kt + p.x, k1);
        }
    }
}

// The slot of (kk, x) in a k-major tile of `row` vec4s a row (As: BM/4,
// Bs: BN/4): x XOR kk in row kk. Where neighbouring threads stage
// neighbouring k of one x (lanes 0..7 at kk = 0..7), a plain kk*row + x puts
// all eight in the same four banks (8-way: `tests/access_patterns.rs`); the
// XOR spreads them over all 32, and a read of one kk by neighbouring x stays
// a permutation of an aligned block of 16 vec4s. Needs kk < 16 <= row, a
// power of two (BK <= 16; BM, BN of 64 or 128).
fn tile_slot(row: u32, kk: u32, x: u32) -> u32 {
    return kk * row + (x ^ kk);
}

// Stores this thread's share of B's tile (from `load_part`) into Bs.
fn stage_b(pb: ptr<function, array<vec4<f32>, 2>>, li: u32) {
    let bn4 = BN / 4u;
    if (along_mn(false)) {
        for (var w = 0u; w < 8u; w = w + 1u) { // unroll
            let f = li + 256u * w;
            if (f < BK * BN) {
                let n = f % BN;
                Bs[tile_slot(bn4, f / BN, n / 4u)][n % 4u] = (*pb)[w / 4u][w % 4u];
            }
        }
        return;
    }
    for (var u = 0u; u < 2u; u = u + 1u) {
        let e = li + 256u * u;
        if (e < BK * bn4) {
            let p = b_pos(e);
            Bs[tile_slot(bn4, p.x, p.y)] = (*pb)[u];
        }
    }
}

var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;
