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
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
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
