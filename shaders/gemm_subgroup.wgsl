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
//
// The Params struct, the bindings, the operand loads, B's staging and the
// register tile's fmas and stores are in gemm_shared.wgsl (shared with
// gemm.wgsl), which the host composes after this file.

override BM: u32 = 128u;
override BN: u32 = 128u;
override BK: u32 = 16u;
override TM4: u32 = BM / 64u;
override TN4: u32 = BN / 64u;
// Lanes that share one A fragment: 8, or 4 where subgroups may have 4 lanes.
override G: u32 = 8u;
// The operands stored along m or n are read as vec4s (`operand4` in
// gemm_shared.wgsl); the host sets it where they are laid out in aligned
// vec4s (`Gemm::vec4`).
override VEC4: bool = false;

var<workgroup> counter: atomic<u32>;

// This lane's share of its row group's A fragment of the K step at kt
// (vec4 v = i*BK + kk, rows (i*16 + ty)*4 + r, column kt + kk, for
// v = s*G + q in slot s).
fn load_a(held: ptr<function, array<vec4<f32>, 8>>, q: u32, ty: u32, abase: u32, bm0: u32,
          kt: u32, k1: u32) {
    let frag = TM4 * BK;
    for (var s = 0u; s < (frag + G - 1u) / G; s = s + 1u) {
        let v = s * G + q;
        let i = v / BK;
        let k = kt + v % BK;
        let m = bm0 + (i * 16u + ty) * 4u;
        var f = vec4<f32>(0.0);
        if (v < frag) {
            f = operand4(true, abase, m, k, k1);
        }
        (*held)[s] = f;
    }
}

@compute @workgroup_size(256, 1, 1)
fn shared_a(
    @builtin(workgroup_id) wid_in: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let at = gemm_at(wid_in);
    let k0 = at.k0;
    let k1 = at.k1;
    let abase = at.abase;
    let bbase = at.bbase;
    let bm0 = at.wid.y * BM;
    let bn0 = at.wid.x * BN;
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
    // B's staging share of the next K step (pb), loaded while the current
    // one is multiplied; A's fragment share (held) of the current step,
    // loaded at its start (prefetching it too would keep 32 more registers
    // live: AMD's compiler then spills on RDNA3, `kernel-stats`).
    var pb: array<vec4<f32>, 2>;
    if (k0 < k1) {
        load_part(false, &pb, li, bbase, bn0, k0, k1);
    }

    for (var kt = k0; kt < k1; kt = kt + BK) {
        var held: array<vec4<f32>, 8>;
        load_a(&held, q, ty, abase, bm0, kt, k1);
        stage_b(&pb, li);
        workgroupBarrier();
        if (kt + BK < k1) {
            load_part(false, &pb, li, bbase, bn0, kt + BK, k1);
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
                bv[j] = Bs[tile_slot(bn4, kk, j * 16u + tx)];
            }
            fma_tile(&acc, &av, &bv);
        }
        workgroupBarrier();
    }
    store_tile(&acc, at, bm0, bn0, tx, ty);
}
