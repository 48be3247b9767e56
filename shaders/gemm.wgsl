// gemm.wgsl: C = op(A) · op(B) (+ bias), batched, optionally split along K.
//
// Equations, for every batch z and split s (z-dimension of the dispatch is
// batch * n_split + s):
//
//   C[z][s](m, n) = sum over k in [s*k_chunk, min(K, (s+1)*k_chunk)) of A(m, k) B(k, n)
//                   (+ bias[n] where flags & 1, only without split)
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
// the result is bitwise reproducible.
//
// One thread computes a TM x TN = 4 x 8 block of C, kept in registers (eight
// vec4 accumulators), with one fma per element per k: the register tile
// reuses every loaded value 4 or 8 times and needs no workgroup memory. A
// workgroup of 8 x 8 threads covers a 32 x 64 tile of C. Rows and columns
// past the edge of C are clamped for the loads (so every load is in bounds)
// and masked for the stores.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32, n: u32, k: u32, k_chunk: u32,
    lda: u32, ldb: u32, ldc: u32, n_split: u32,
    a_off: u32, b_off: u32, c_off: u32, bias_off: u32,
    a_batch: u32, b_batch: u32, c_batch: u32, c_split: u32,
    flags: u32, gx: u32, gy: u32, gz: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TM: u32 = 4u;
const TN: u32 = 8u;
const WG: u32 = 8u;

fn a_at(base: u32, m: u32, k: u32) -> f32 {
    if (TRANS_A) {
        return a[base + k * P.lda + m];
    }
    return a[base + m * P.lda + k];
}

fn b_at(base: u32, k: u32, n: u32) -> f32 {
    if (TRANS_B) {
        return b[base + n * P.ldb + k];
    }
    return b[base + k * P.ldb + n];
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // A grid larger than the device allows per dimension comes in pieces; (gx, gy, gz) is this piece's offset.
    let wid = wid_in + vec3<u32>(P.gx, P.gy, P.gz);
    let batch = wid.z / P.n_split;
    let split = wid.z % P.n_split;
    let k0 = split * P.k_chunk;
    let k1 = min(P.k, k0 + P.k_chunk);
    let abase = P.a_off + batch * P.a_batch;
    let bbase = P.b_off + batch * P.b_batch;
    let m0 = (wid.y * WG + lid.y) * TM;
    let n0 = (wid.x * WG + lid.x) * TN;

    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0); var d1 = vec4<f32>(0.0); var d2 = vec4<f32>(0.0); var d3 = vec4<f32>(0.0);

    // Rows and columns clamped into C: edge threads load valid (repeated) data, and mask their stores.
    let ml = P.m - 1u;
    let nl = P.n - 1u;
    let r0 = min(m0, ml); let r1 = min(m0 + 1u, ml); let r2 = min(m0 + 2u, ml); let r3 = min(m0 + 3u, ml);
    let q0 = min(n0, nl); let q1 = min(n0 + 1u, nl); let q2 = min(n0 + 2u, nl); let q3 = min(n0 + 3u, nl);
    let q4 = min(n0 + 4u, nl); let q5 = min(n0 + 5u, nl); let q6 = min(n0 + 6u, nl); let q7 = min(n0 + 7u, nl);

    for (var kk = k0; kk < k1; kk = kk + 1u) {
        let av = vec4<f32>(a_at(abase, r0, kk), a_at(abase, r1, kk), a_at(abase, r2, kk), a_at(abase, r3, kk));
        let b0 = vec4<f32>(b_at(bbase, kk, q0), b_at(bbase, kk, q1), b_at(bbase, kk, q2), b_at(bbase, kk, q3));
        let b1 = vec4<f32>(b_at(bbase, kk, q4), b_at(bbase, kk, q5), b_at(bbase, kk, q6), b_at(bbase, kk, q7));
        c0 = fma(vec4<f32>(av.x), b0, c0); d0 = fma(vec4<f32>(av.x), b1, d0);
        c1 = fma(vec4<f32>(av.y), b0, c1); d1 = fma(vec4<f32>(av.y), b1, d1);
        c2 = fma(vec4<f32>(av.z), b0, c2); d2 = fma(vec4<f32>(av.z), b1, d2);
        c3 = fma(vec4<f32>(av.w), b0, c3); d3 = fma(vec4<f32>(av.w), b1, d3);
    }

    if ((P.flags & 1u) != 0u) {
        let bv0 = vec4<f32>(bias[P.bias_off + q0], bias[P.bias_off + q1], bias[P.bias_off + q2], bias[P.bias_off + q3]);
        let bv1 = vec4<f32>(bias[P.bias_off + q4], bias[P.bias_off + q5], bias[P.bias_off + q6], bias[P.bias_off + q7]);
        c0 += bv0; c1 += bv0; c2 += bv0; c3 += bv0;
        d0 += bv1; d1 += bv1; d2 += bv1; d3 += bv1;
    }

    let cbase = P.c_off + batch * P.c_batch + split * P.c_split;
    store_row(cbase, m0, n0, c0, d0);
    store_row(cbase, m0 + 1u, n0, c1, d1);
    store_row(cbase, m0 + 2u, n0, c2, d2);
    store_row(cbase, m0 + 3u, n0, c3, d3);
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
// windows: the same product read through uniform-buffer windows, for CPU
// (software) adapters.
//
// On llvmpipe (Mesa's software Vulkan driver) a storage-buffer or workgroup
// load inside a loop costs about 30 ns per 8-lane vector (it runs a loop over
// the lanes), while a uniform-buffer load costs about 2 ns per float. So on a
// CPU adapter both operands are read through 64 KiB uniform-buffer windows.
// Both operands are "NT" (K contiguous) in the chunked layout of util.wgsl's
// `chunk`: the logical (R, K) matrix as ceil(K / Kc) chunks of (R, Kc),
// zero-padded, with Kc a multiple of 8 and at most 256. One dispatch reads one
// window of A (rows [0, ra) of the current block, Kc floats each) and one of B
// (rows [0, rb)), bound at dynamic offsets, and computes
//
//   C[m0 + i][n0 + j] (+)= sum over k < Kc of WA[i][k] * WB[j][k]    (+ bias[n0 + j])
//
// accumulating into C for every K chunk after the first (flags & 2), adding
// the bias with the first (flags & 1). The host walks the chunks and windows
// in a fixed order, so the sums are reproducible.
//
// One thread computes an 8 x 8 block of C in 64 scalar registers (written out
// by hand: llvmpipe keeps arrays in memory, which costs 3x); a workgroup of 8
// threads (one SIMD vector on llvmpipe) covers 8 rows x 64 columns, and its
// 8 rows are the same for all 8 lanes, so the A loads are uniform.

struct WinParams {
    ra: u32, rb: u32, kc4: u32, m0: u32,
    n0: u32, m: u32, n: u32, ldc: u32,
    c_off: u32, bias_off: u32, flags: u32, gx: u32,
    gy: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(5) var<uniform> W: WinParams;
@group(0) @binding(6) var<uniform> wa: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> wb: array<vec4<f32>, 4096>;

fn win_store(i: u32, j: u32, v: f32) {
    let m = W.m0 + i;
    let n = W.n0 + j;
    if (i >= W.ra || j >= W.rb || m >= W.m || n >= W.n) {
        return;
    }
    let at = W.c_off + m * W.ldc + n;
    var out = v;
    if ((W.flags & 2u) != 0u) {
        out = c[at] + v;
    }
    if ((W.flags & 1u) != 0u) {
        out = out + bias[W.bias_off + n];
    }
    c[at] = out;
}

@compute @workgroup_size(8, 1, 1)
fn windows(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wid = wid_in + vec3<u32>(W.gx, W.gy, 0u);
    let i0 = wid.y * 8u;
    let j0 = (wid.x * 8u + lid.x) * 8u;
    let kc4 = W.kc4;
    let il = W.ra - 1u;
    let jl = W.rb - 1u;
    let ra0 = min(i0 + 0u, il) * kc4;
    let ra1 = min(i0 + 1u, il) * kc4;
    let ra2 = min(i0 + 2u, il) * kc4;
    let ra3 = min(i0 + 3u, il) * kc4;
    let ra4 = min(i0 + 4u, il) * kc4;
    let ra5 = min(i0 + 5u, il) * kc4;
    let ra6 = min(i0 + 6u, il) * kc4;
    let ra7 = min(i0 + 7u, il) * kc4;
    let rb0 = min(j0 + 0u, jl) * kc4;
    let rb1 = min(j0 + 1u, jl) * kc4;
    let rb2 = min(j0 + 2u, jl) * kc4;
    let rb3 = min(j0 + 3u, jl) * kc4;
    let rb4 = min(j0 + 4u, jl) * kc4;
    let rb5 = min(j0 + 5u, jl) * kc4;
    let rb6 = min(j0 + 6u, jl) * kc4;
    let rb7 = min(j0 + 7u, jl) * kc4;
    var c00 = 0.0; var c01 = 0.0; var c02 = 0.0; var c03 = 0.0; var c04 = 0.0; var c05 = 0.0; var c06 = 0.0; var c07 = 0.0;
    var c10 = 0.0; var c11 = 0.0; var c12 = 0.0; var c13 = 0.0; var c14 = 0.0; var c15 = 0.0; var c16 = 0.0; var c17 = 0.0;
    var c20 = 0.0; var c21 = 0.0; var c22 = 0.0; var c23 = 0.0; var c24 = 0.0; var c25 = 0.0; var c26 = 0.0; var c27 = 0.0;
    var c30 = 0.0; var c31 = 0.0; var c32 = 0.0; var c33 = 0.0; var c34 = 0.0; var c35 = 0.0; var c36 = 0.0; var c37 = 0.0;
    var c40 = 0.0; var c41 = 0.0; var c42 = 0.0; var c43 = 0.0; var c44 = 0.0; var c45 = 0.0; var c46 = 0.0; var c47 = 0.0;
    var c50 = 0.0; var c51 = 0.0; var c52 = 0.0; var c53 = 0.0; var c54 = 0.0; var c55 = 0.0; var c56 = 0.0; var c57 = 0.0;
    var c60 = 0.0; var c61 = 0.0; var c62 = 0.0; var c63 = 0.0; var c64 = 0.0; var c65 = 0.0; var c66 = 0.0; var c67 = 0.0;
    var c70 = 0.0; var c71 = 0.0; var c72 = 0.0; var c73 = 0.0; var c74 = 0.0; var c75 = 0.0; var c76 = 0.0; var c77 = 0.0;
    for (var k = 0u; k < kc4; k = k + 1u) {
        let b0 = wb[rb0 + k];
        let b1 = wb[rb1 + k];
        let b2 = wb[rb2 + k];
        let b3 = wb[rb3 + k];
        let b4 = wb[rb4 + k];
        let b5 = wb[rb5 + k];
        let b6 = wb[rb6 + k];
        let b7 = wb[rb7 + k];
        let a0 = wa[ra0 + k];
        c00 += dot(a0, b0); c01 += dot(a0, b1); c02 += dot(a0, b2); c03 += dot(a0, b3); c04 += dot(a0, b4); c05 += dot(a0, b5); c06 += dot(a0, b6); c07 += dot(a0, b7);
        let a1 = wa[ra1 + k];
        c10 += dot(a1, b0); c11 += dot(a1, b1); c12 += dot(a1, b2); c13 += dot(a1, b3); c14 += dot(a1, b4); c15 += dot(a1, b5); c16 += dot(a1, b6); c17 += dot(a1, b7);
        let a2 = wa[ra2 + k];
        c20 += dot(a2, b0); c21 += dot(a2, b1); c22 += dot(a2, b2); c23 += dot(a2, b3); c24 += dot(a2, b4); c25 += dot(a2, b5); c26 += dot(a2, b6); c27 += dot(a2, b7);
        let a3 = wa[ra3 + k];
        c30 += dot(a3, b0); c31 += dot(a3, b1); c32 += dot(a3, b2); c33 += dot(a3, b3); c34 += dot(a3, b4); c35 += dot(a3, b5); c36 += dot(a3, b6); c37 += dot(a3, b7);
        let a4 = wa[ra4 + k];
        c40 += dot(a4, b0); c41 += dot(a4, b1); c42 += dot(a4, b2); c43 += dot(a4, b3); c44 += dot(a4, b4); c45 += dot(a4, b5); c46 += dot(a4, b6); c47 += dot(a4, b7);
        let a5 = wa[ra5 + k];
        c50 += dot(a5, b0); c51 += dot(a5, b1); c52 += dot(a5, b2); c53 += dot(a5, b3); c54 += dot(a5, b4); c55 += dot(a5, b5); c56 += dot(a5, b6); c57 += dot(a5, b7);
        let a6 = wa[ra6 + k];
        c60 += dot(a6, b0); c61 += dot(a6, b1); c62 += dot(a6, b2); c63 += dot(a6, b3); c64 += dot(a6, b4); c65 += dot(a6, b5); c66 += dot(a6, b6); c67 += dot(a6, b7);
        let a7 = wa[ra7 + k];
        c70 += dot(a7, b0); c71 += dot(a7, b1); c72 += dot(a7, b2); c73 += dot(a7, b3); c74 += dot(a7, b4); c75 += dot(a7, b5); c76 += dot(a7, b6); c77 += dot(a7, b7);
    }
    win_store(i0 + 0u, j0 + 0u, c00); win_store(i0 + 0u, j0 + 1u, c01); win_store(i0 + 0u, j0 + 2u, c02); win_store(i0 + 0u, j0 + 3u, c03); win_store(i0 + 0u, j0 + 4u, c04); win_store(i0 + 0u, j0 + 5u, c05); win_store(i0 + 0u, j0 + 6u, c06); win_store(i0 + 0u, j0 + 7u, c07);
    win_store(i0 + 1u, j0 + 0u, c10); win_store(i0 + 1u, j0 + 1u, c11); win_store(i0 + 1u, j0 + 2u, c12); win_store(i0 + 1u, j0 + 3u, c13); win_store(i0 + 1u, j0 + 4u, c14); win_store(i0 + 1u, j0 + 5u, c15); win_store(i0 + 1u, j0 + 6u, c16); win_store(i0 + 1u, j0 + 7u, c17);
    win_store(i0 + 2u, j0 + 0u, c20); win_store(i0 + 2u, j0 + 1u, c21); win_store(i0 + 2u, j0 + 2u, c22); win_store(i0 + 2u, j0 + 3u, c23); win_store(i0 + 2u, j0 + 4u, c24); win_store(i0 + 2u, j0 + 5u, c25); win_store(i0 + 2u, j0 + 6u, c26); win_store(i0 + 2u, j0 + 7u, c27);
    win_store(i0 + 3u, j0 + 0u, c30); win_store(i0 + 3u, j0 + 1u, c31); win_store(i0 + 3u, j0 + 2u, c32); win_store(i0 + 3u, j0 + 3u, c33); win_store(i0 + 3u, j0 + 4u, c34); win_store(i0 + 3u, j0 + 5u, c35); win_store(i0 + 3u, j0 + 6u, c36); win_store(i0 + 3u, j0 + 7u, c37);
    win_store(i0 + 4u, j0 + 0u, c40); win_store(i0 + 4u, j0 + 1u, c41); win_store(i0 + 4u, j0 + 2u, c42); win_store(i0 + 4u, j0 + 3u, c43); win_store(i0 + 4u, j0 + 4u, c44); win_store(i0 + 4u, j0 + 5u, c45); win_store(i0 + 4u, j0 + 6u, c46); win_store(i0 + 4u, j0 + 7u, c47);
    win_store(i0 + 5u, j0 + 0u, c50); win_store(i0 + 5u, j0 + 1u, c51); win_store(i0 + 5u, j0 + 2u, c52); win_store(i0 + 5u, j0 + 3u, c53); win_store(i0 + 5u, j0 + 4u, c54); win_store(i0 + 5u, j0 + 5u, c55); win_store(i0 + 5u, j0 + 6u, c56); win_store(i0 + 5u, j0 + 7u, c57);
    win_store(i0 + 6u, j0 + 0u, c60); win_store(i0 + 6u, j0 + 1u, c61); win_store(i0 + 6u, j0 + 2u, c62); win_store(i0 + 6u, j0 + 3u, c63); win_store(i0 + 6u, j0 + 4u, c64); win_store(i0 + 6u, j0 + 5u, c65); win_store(i0 + 6u, j0 + 6u, c66); win_store(i0 + 6u, j0 + 7u, c67);
    win_store(i0 + 7u, j0 + 0u, c70); win_store(i0 + 7u, j0 + 1u, c71); win_store(i0 + 7u, j0 + 2u, c72); win_store(i0 + 7u, j0 + 3u, c73); win_store(i0 + 7u, j0 + 4u, c74); win_store(i0 + 7u, j0 + 5u, c75); win_store(i0 + 7u, j0 + 6u, c76); win_store(i0 + 7u, j0 + 7u, c77);
}
