// gemm.wgsl: C = op(A) · op(B) (+ bias), batched, optionally split along K.
//
// Equations, for every batch z and split s (z-dimension of the dispatch is
// batch * n_split + s):
//
//   C[z][s](m, n) = sum over k in [s*k_chunk, min(K, (s+1)*k_chunk)) of A(m, k) B(k, n)
//                   (+ bias[n] where flags & 1: split 0 adds it, where a product
//                   with a bias is split at all: K past the loop budget)
//
//   A(m, k) = a[a_off + z*a_batch + m*lda + k]     (TRANS_A = false: A stored (M, K))
//           = a[a_off + z*a_batch + k*lda + m]     (TRANS_A = true:  A stored (K, M))
//   B(k, n) = b[b_off + z*b_batch + k*ldb + n]     (TRANS_B = false: B stored (K, N))
//           = b[b_off + z*b_batch + n*ldb + k]     (TRANS_B = true:  B stored (N, K))
//   C[z][s](m, n) at c[c_off + z*c_batch + s*c_split + m*ldc + n]
//
// The GRU uses it as
//   gi   = X · W_ihᵀ + b_ih          (T·B, D·3H)  TRANS_B, bias    (forward, all T steps at once)
//   dX   = dG_i · W_ih               (T·B, I)     plain            (backward)
//   dW_ih = dG_iᵀ · X                (D·3H, I)    TRANS_A, split-K (backward)
//   dW_hh = dG_hᵀ · H_prev           (3H, H)      TRANS_A, split-K, batched over directions
// Split-K partials are summed in a fixed order by reduce.wgsl: no atomics, so
// the result is bitwise reproducible. Every entry point sums each output's
// products in increasing k, one fma at a time from 0, then adds the bias.
//
// Two entry points:
//
// `main` (the simple kernel): one thread computes a TM x TN = 4 x 8 block of
// C, kept in registers (eight vec4 accumulators), with one fma per element
// per k: the register tile reuses every loaded value 4 or 8 times and needs
// no workgroup memory. A workgroup of 8 x 8 threads covers a 32 x 64 tile of
// C. Rows and columns past the edge of C are clamped for the loads (so every
// load is in bounds) and masked for the stores.
//
// `tiled`: a workgroup of 16 x 16 threads computes a BM x BN block of C
// (BM, BN = 64 or 128: override constants), stepping through K by BK (8 or
// 16). Per step it stages the BK x BM tile of A and the BK x BN tile of B
// in workgroup memory, both k-major (As[k][m], Bs[k][n], as vec4s along m
// and n, vec4 x of row k at slot k*row + (x XOR k): `tile_slot`, which keeps
// the staging stores free of bank conflicts), so that the inner loop reads
// whole vec4s; the next step's tiles
// are loaded into registers while the current one is multiplied (one
// buffer in workgroup memory, two barriers per step): per k, a thread reads
// TM/4 vec4s of As and TN/4 of Bs and does TM x TN fmas. Thread (tx, ty)
// owns rows   (i*16 + ty)*4 + r   (i < TM/4 = BM/64, r < 4) and columns
// (j*16 + tx)*4 + c   (j < TN/4 = BN/64, c < 4) of the block, so 16
// neighbouring threads read 16 vec4s of one aligned block of Bs (no bank conflict)
// and a row of threads reads the same vec4 of As (a broadcast):
//
//   64 x 64:   TM x TN = 4 x 4,   As + Bs = BK*(64+64)*4 bytes   (4 or 8 KiB)
//   128 x 128: TM x TN = 8 x 8,   As + Bs = BK*(128+128)*4 bytes (8 or 16 KiB)
//
// all within WebGPU's default 16 KiB and 256 invocations. The staging loads
// walk the operand's contiguous dimension with neighbouring threads (4
// consecutive floats a thread where that is m or n; BK consecutive k's across
// threads where it is k), and load 0 past the edges of A and B (rows, columns,
// and the k range of the split), so padded products add exactly 0; stores
// past the edges of C are masked.
//
// The Params struct, the bindings, the operand loads, B's staging and the
// register tile's fmas and stores are in gemm_shared.wgsl (shared with
// gemm_subgroup.wgsl), which the host composes after this file.

const TM: u32 = 4u;
const TN: u32 = 8u;
const WG: u32 = 8u;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = gemm_at(wid_in);
    let m0 = (at.wid.y * WG + lid.y) * TM;
    let n0 = (at.wid.x * WG + lid.x) * TN;

    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0); var d1 = vec4<f32>(0.0); var d2 = vec4<f32>(0.0); var d3 = vec4<f32>(0.0);

    // Rows and columns clamped into C: edge threads load valid (repeated) data, and mask their stores.
    let ml = P.m - 1u;
    let nl = P.n - 1u;
    let r0 = min(m0, ml); let r1 = min(m0 + 1u, ml); let r2 = min(m0 + 2u, ml); let r3 = min(m0 + 3u, ml);
    let q0 = min(n0, nl); let q1 = min(n0 + 1u, nl); let q2 = min(n0 + 2u, nl); let q3 = min(n0 + 3u, nl);
    let q4 = min(n0 + 4u, nl); let q5 = min(n0 + 5u, nl); let q6 = min(n0 + 6u, nl); let q7 = min(n0 + 7u, nl);

    for (var kk = at.k0; kk < at.k1; kk = kk + 1u) {
        let av = vec4<f32>(a_at(at.abase, r0, kk), a_at(at.abase, r1, kk), a_at(at.abase, r2, kk), a_at(at.abase, r3, kk));
        let b0 = vec4<f32>(b_at(at.bbase, kk, q0), b_at(at.bbase, kk, q1), b_at(at.bbase, kk, q2), b_at(at.bbase, kk, q3));
        let b1 = vec4<f32>(b_at(at.bbase, kk, q4), b_at(at.bbase, kk, q5), b_at(at.bbase, kk, q6), b_at(at.bbase, kk, q7));
        c0 = fma(vec4<f32>(av.x), b0, c0); d0 = fma(vec4<f32>(av.x), b1, d0);
        c1 = fma(vec4<f32>(av.y), b0, c1); d1 = fma(vec4<f32>(av.y), b1, d1);
        c2 = fma(vec4<f32>(av.z), b0, c2); d2 = fma(vec4<f32>(av.z), b1, d2);
        c3 = fma(vec4<f32>(av.w), b0, c3); d3 = fma(vec4<f32>(av.w), b1, d3);
    }

    if ((P.flags & 1u) != 0u && at.split == 0u) {
        let bv0 = vec4<f32>(f32(bias[P.bias_off + q0]), f32(bias[P.bias_off + q1]), f32(bias[P.bias_off + q2]), f32(bias[P.bias_off + q3]));
        let bv1 = vec4<f32>(f32(bias[P.bias_off + q4]), f32(bias[P.bias_off + q5]), f32(bias[P.bias_off + q6]), f32(bias[P.bias_off + q7]));
        c0 += bv0; c1 += bv0; c2 += bv0; c3 += bv0;
        d0 += bv1; d1 += bv1; d2 += bv1; d3 += bv1;
    }

    store_row(at.cbase, m0, n0, c0, d0);
    store_row(at.cbase, m0 + 1u, n0, c1, d1);
    store_row(at.cbase, m0 + 2u, n0, c2, d2);
    store_row(at.cbase, m0 + 3u, n0, c3, d3);
}

fn store_row(cbase: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (m >= P.m) {
        return;
    }
    let row = cbase + m * P.ldc;
    if (n0 + 8u <= P.n) {
        c[row + n0] = lo.x; c[row + n0 + 1u] = lo.y; c[row + n0 + 2u] = lo.z; c[row + n0 + 3u] = lo.w;
        c[row + n0 + 4u] = hi.x; c[row + n0 + 5u] = hi.y; c[row + n0 + 6u] = hi.z; c[row + n0 + 7u] = hi.w;
        return;
    }
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var i = 0u; i < 8u; i = i + 1u) {
        if (n0 + i < P.n) {
            c[row + n0 + i] = v[i];
        }
    }
}

// ---------------------------------------------------------------------------
// `tiled` (see the top of the file).

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 8u;
// vec4s of rows and of columns per thread: TM/4 and TN/4.
override TM4: u32 = BM / 64u;
override TN4: u32 = BN / 64u;
// The operands stored along m or n are read as vec4s (`operand4` in
// gemm_shared.wgsl); the host sets it where they are laid out in aligned
// vec4s (`Gemm::vec4`).
override VEC4: bool = false;

var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;

// This thread's share of the A and B tiles of the K step at kt (staging
// indices li and li + 256; at most 2 * 256 vec4s per tile; see `load_part`).
fn load_tiles(pa: ptr<function, array<vec4<f32>, 2>>, pb: ptr<function, array<vec4<f32>, 2>>,
              li: u32, abase: u32, bbase: u32, bm0: u32, bn0: u32, kt: u32, k1: u32) {
    load_part(true, pa, li, abase, bm0, kt, k1);
    load_part(false, pb, li, bbase, bn0, kt, k1);
}

@compute @workgroup_size(16, 16, 1)
fn tiled(
    @builtin(workgroup_id) wid_in: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let at = gemm_at(wid_in);
    let k0 = at.k0;
    let k1 = at.k1;
    let bm0 = at.wid.y * BM;
    let bn0 = at.wid.x * BN;
    let bm4 = BM / 4u;
    let bn4 = BN / 4u;

    // acc[(i*4 + r)*TN4 + j]: row (i*16 + ty)*4 + r, columns (j*16 + tx)*4 .. +4.
    var acc: array<vec4<f32>, 16>;

    // The next step's tiles, loaded into registers while the current one is
    // multiplied: pa[u], pb[u] for staging index e = li + 256*u, or scalar
    // w in component w % 4 of pa[w / 4] (`along_mn`).
    var pa: array<vec4<f32>, 2>;
    var pb: array<vec4<f32>, 2>;
    if (k0 < k1) {
        load_tiles(&pa, &pb, li, at.abase, at.bbase, bm0, bn0, k0, k1);
    }

    for (var kt = k0; kt < k1; kt = kt + BK) {
        if (along_mn(true)) {
            for (var w = 0u; w < 8u; w = w + 1u) { // unroll
                let f = li + 256u * w;
                if (f < BK * BM) {
                    let m = f % BM;
                    As[tile_slot(bm4, f / BM, m / 4u)][m % 4u] = pa[w / 4u][w % 4u];
                }
            }
        } else {
            for (var u = 0u; u < 2u; u = u + 1u) {
                let e = li + 256u * u;
                if (e < BK * bm4) {
                    let p = a_pos(e);
                    As[tile_slot(bm4, p.x, p.y)] = pa[u];
                }
            }
        }
        stage_b(&pb, li);
        workgroupBarrier();
        if (kt + BK < k1) {
            load_tiles(&pa, &pb, li, at.abase, at.bbase, bm0, bn0, kt + BK, k1);
        }
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var av: array<vec4<f32>, 2>;
            var bv: array<vec4<f32>, 2>;
            for (var i = 0u; i < TM4; i = i + 1u) {
                av[i] = As[tile_slot(bm4, kk, i * 16u + lid.y)];
            }
            for (var j = 0u; j < TN4; j = j + 1u) {
                bv[j] = Bs[tile_slot(bn4, kk, j * 16u + lid.x)];
            }
            fma_tile(&acc, &av, &bv);
        }
        workgroupBarrier();
    }
    store_tile(&acc, at, bm0, bn0, lid.x, lid.y);
}
