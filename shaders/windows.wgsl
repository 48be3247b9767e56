// windows.wgsl: C = A · Bᵀ (+ bias) read through uniform-buffer windows, for
// CPU (software) adapters: the products of gemm.wgsl on the window path.
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

// Buffers (f32, but the bias: SB, f16 for an f16 model): A and B in the chunked layout, bound as windows of 64 KiB at
// the dispatch's dynamic offsets; C (M, N) row-major with stride ldc from
// c_off; the bias (N) from bias_off. The bindings keep the numbers they had
// beside gemm.wgsl's `main`.
//
// ra, rb: the rows of this window of A and of B; kc4: Kc / 4; (m0, n0): the
// window's first row of C and column of C; (m, n): C's size; flags as above;
// (gx, gy): the offset of this piece of the grid.

struct Params {
    ra: u32, rb: u32, kc4: u32, m0: u32,
    n0: u32, m: u32, n: u32, ldc: u32,
    c_off: u32, bias_off: u32, flags: u32, gx: u32,
    gy: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(3) var<storage, read> bias: array<SB>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<uniform> W: Params;
@group(0) @binding(6) var<uniform> wa: array<vec4<f32>, WINDOW_VEC4S>;
@group(0) @binding(7) var<uniform> wb: array<vec4<f32>, WINDOW_VEC4S>;

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
        out = out + f32(bias[W.bias_off + n]);
    }
    c[at] = out;
}

@compute @workgroup_size(8, 1, 1)
fn windows(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wid = grid_id(wid_in, W.gx, W.gy, 0u);
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
