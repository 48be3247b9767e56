// gemm_subgroup.wgsl: C = op(A) · op(B) (+ bias), as gemm.wgsl's `tiled`, with
// A's fragments shared through subgroup shuffles instead of workgroup memory.
// Compiled only on devices with subgroup operations (wgpu's SUBGROUP feature):
// a module that uses them does not validate elsewhere, hence its own file.
//
// Equations, buffers and parameters are those of gemm.wgsl (the same Params
// struct, bindings, transposes, batching, split-K partials, bias):
//
//   C[z][s](m, n) = sum over k in [s*k_chunk, min(K, (s+1)*k_chunk)) of A(m, k) B(k, n)
//                   (+ bias[n] where flags & 1, added by split 0)
//   A(m, k) = a[a_off + z*a_batch + m*lda + k]   or  a[.. + k*lda + m]   (TRANS_A)
//   B(k, n) = b[b_off + z*b_batch + k*ldb + n]   or  b[.. + n*ldb + k]   (TRANS_B)
//   C[z][s](m, n) at c[c_off + z*c_batch + s*c_split + m*ldc + n]
//
// A workgroup of 256 threads computes a BM x BN block of C (override
// constants), stepping through K by BK, each output summed in increasing k
// from 0 (then the bias), like every kernel of gemm.wgsl. Thread t owns rows
// (i*16 + t/16)*4 + r and columns (j*16 + t%16)*4 + c of the block (i < BM/64,
// j < BN/64, r, c < 4): a TM x TN register tile. B's tile is staged in
// workgroup memory, k-major (Bs[k][n], vec4s along n), as in `tiled`. A's tile
// is not: each group of G consecutive lanes of a subgroup, which share a row
// group t/16, loads the row group's TM x BK fragment straight from A into
// registers, G-th each (vec4s over r: fragment v = i*BK + k is held by lane
// v % G of the group, in slot v / G), and per k each thread takes its vec4s
// of A by subgroupShuffle from the lane that holds them. G (an override
// constant) is min(8, the adapter's smallest subgroup size), so that slots
// and source lanes are constants once the k loop is unrolled; a row group of
// 16 threads is then 2 groups (4 with G = 4), each loading the fragment (a
// cache hit after the first). Half the workgroup memory of `tiled`, no
// staging stores or reads of A in workgroup memory. As in `tiled`, the next
// K step's operands are loaded into registers while the current one is
// multiplied.
//
// Thread numbers t come from a workgroup counter (each subgroup takes
// subgroup_size consecutive numbers, lane l the l-th), so the mapping holds
// whatever the order of subgroups in the workgroup; any subgroup size from 4
// to 128 (8 on llvmpipe, 32 on NVIDIA and Apple, 32 or 64 on AMD) works, as
// long as it is the same for the whole dispatch.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override BM: u32 = 128u;
override BN: u32 = 128u;
override BK: u32 = 16u;
override TM4: u32 = BM / 64u;
override TN4: u32 = BN / 64u;
// Lanes that share one A fragment: 8, or 4 where subgroups may have 4 lanes.
override G: u32 = 8u;

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

var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;
var<workgroup> counter: atomic<u32>;

// A(m, k), 0 outside rows [0, M) and the step's k range [.., k1).
fn a_el(base: u32, m: u32, k: u32, k1: u32) -> f32 {
    let mm = min(m, P.m - 1u);
    let kk = min(k, P.k - 1u);
    var v: f32;
    if (TRANS_A) {
        v = f32(a[base + kk * P.lda + mm]);
    } else {
        v = f32(a[base + mm * P.lda + kk]);
    }
    return select(0.0, v, m < P.m && k < k1);
}

// B(k, n), 0 outside columns [0, N) and the step's k range [.., k1).
fn b_el(base: u32, k: u32, n: u32, k1: u32) -> f32 {
    let kk = min(k, P.k - 1u);
    let nn = min(n, P.n - 1u);
    var v: f32;
    if (TRANS_B) {
        v = f32(b[base + nn * P.ldb + kk]);
    } else {
        v = f32(b[base + kk * P.ldb + nn]);
    }
    return select(0.0, v, n < P.n && k < k1);
}

// Staging index e of the B tile -> (kk, n4): Bs[kk][n4] holds B(kt + kk,
// bn0 + 4*n4 + c), c < 4; neighbouring threads walk B's contiguous dimension.
fn b_pos(e: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>(e % BK, e / BK);
    }
    return vec2<u32>(e / (BN / 4u), e % (BN / 4u));
}

// The operands of the K step at kt: this lane's share of its row group's A
// fragment (vec4 v = i*BK + kk, rows (i*16 + ty)*4 + r, column kt + kk, for
// v = s*G + q in slot s), and its share of B's tile (staging indices li and
// li + 256).
fn load_step(held: ptr<function, array<vec4<f32>, 8>>, pb: ptr<function, array<vec4<f32>, 2>>,
             li: u32, q: u32, ty: u32, abase: u32, bbase: u32, bm0: u32, bn0: u32,
             kt: u32, k1: u32) {
    let frag = TM4 * BK;
    for (var s = 0u; s < (frag + G - 1u) / G; s = s + 1u) {
        let v = s * G + q;
        let i = v / BK;
        let k = kt + v % BK;
        let m = bm0 + (i * 16u + ty) * 4u;
        var f = vec4<f32>(0.0);
        if (v < frag) {
            f = vec4<f32>(a_el(abase, m, k, k1), a_el(abase, m + 1u, k, k1),
                          a_el(abase, m + 2u, k, k1), a_el(abase, m + 3u, k, k1));
        }
        (*held)[s] = f;
    }
    for (var u = 0u; u < 2u; u = u + 1u) {
        let e = li + 256u * u;
        if (e < BK * (BN / 4u)) {
            let p = b_pos(e);
            let n = bn0 + 4u * p.y;
            let k = kt + p.x;
            (*pb)[u] = vec4<f32>(
                b_el(bbase, k, n, k1), b_el(bbase, k, n + 1u, k1),
                b_el(bbase, k, n + 2u, k1), b_el(bbase, k, n + 3u, k1));
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn shared_a(
    @builtin(workgroup_id) wid_in: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let batch = wid.z / P.n_split;
    let split = wid.z % P.n_split;
    let k0 = split * P.k_chunk;
    let k1 = min(P.k, k0 + P.k_chunk);
    let abase = P.a_off + batch * P.a_batch;
    let bbase = P.b_off + batch * P.b_batch;
    let bm0 = wid.y * BM;
    let bn0 = wid.x * BN;
    let bn4 = BN / 4u;

    // This thread's number t: subgroup_size consecutive numbers per subgroup.
    if (li == 0u) {
        atomicStore(&counter, 0u);
    }
    workgroupBarrier();
    var first = 0u;
    if (lane == 0u) {
        first = atomicAdd(&counter, sg_size);
    }
    let t = subgroupBroadcast(first, 0u) + lane;
    let tx = t % 16u;
    let ty = t / 16u;
    // The group of lanes sharing ty: G of them from lane g0.
    let q = lane % G;
    let g0 = lane - q;

    var acc: array<vec4<f32>, 16>;
    // The next K step's operands, loaded while the current one is
    // multiplied: A's fragment share (next) and B's staging share (pb).
    var next: array<vec4<f32>, 8>;
    var pb: array<vec4<f32>, 2>;
    if (k0 < k1) {
        load_step(&next, &pb, li, q, ty, abase, bbase, bm0, bn0, k0, k1);
    }

    for (var kt = k0; kt < k1; kt = kt + BK) {
        var held = next;
        for (var u = 0u; u < 2u; u = u + 1u) {
            let e = li + 256u * u;
            if (e < BK * bn4) {
                let p = b_pos(e);
                Bs[p.x * bn4 + p.y] = pb[u];
            }
        }
        workgroupBarrier();
        if (kt + BK < k1) {
            load_step(&next, &pb, li, q, ty, abase, bbase, bm0, bn0, kt + BK, k1);
        }
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var av: array<vec4<f32>, 2>;
            var bv: array<vec4<f32>, 2>;
            for (var i = 0u; i < TM4; i = i + 1u) {
                // The same v in every lane: one slot, read from lane g0 + v % G.
                let v = i * BK + kk;
                av[i] = subgroupShuffle(held[v / G], g0 + v % G);
            }
            for (var j = 0u; j < TN4; j = j + 1u) {
                bv[j] = Bs[kk * bn4 + j * 16u + tx];
            }
            for (var i = 0u; i < TM4; i = i + 1u) {
                for (var r = 0u; r < 4u; r = r + 1u) {
                    let sa = vec4<f32>(av[i][r]);
                    for (var j = 0u; j < TN4; j = j + 1u) {
                        let x = (i * 4u + r) * TN4 + j;
                        acc[x] = fma(sa, bv[j], acc[x]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    let cbase = P.c_off + batch * P.c_batch + split * P.c_split;
    let has_bias = (P.flags & 1u) != 0u && split == 0u;
    for (var j = 0u; j < TN4; j = j + 1u) {
        let n = bn0 + (j * 16u + tx) * 4u;
        var bb = vec4<f32>(0.0);
        if (has_bias) {
            let nl = P.n - 1u;
            bb = vec4<f32>(f32(bias[P.bias_off + min(n, nl)]), f32(bias[P.bias_off + min(n + 1u, nl)]),
                           f32(bias[P.bias_off + min(n + 2u, nl)]), f32(bias[P.bias_off + min(n + 3u, nl)]));
        }
        for (var i = 0u; i < TM4; i = i + 1u) {
            for (var r = 0u; r < 4u; r = r + 1u) {
                let m = bm0 + (i * 16u + ty) * 4u + r;
                var v = acc[(i * 4u + r) * TN4 + j];
                if (has_bias) {
                    v = v + bb;
                }
                store4(cbase, m, n, v);
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
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (n + e < P.n) {
            c[row + n + e] = v[e];
        }
    }
}
