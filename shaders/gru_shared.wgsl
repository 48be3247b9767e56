// gru_shared.wgsl: the step scaffolding that gru_forward.wgsl and
// gru_backward.wgsl share; the host composes it after each of them
// (src/gpu/pipeline.rs `compose`), so it is not a shader of its own.
//
// Both files bind the parameters P (StepParams of common.wgsl) at binding 0
// and the states hs (D, T+1, B, H) in S, whose words from flags_at hold the
// step flags. Step s of the processing order of direction d is time
//
//   t = s                 forwards
//     = T - 1 - s         where d runs in reverse time (`reversed`)
//
// Here: the flags of (t, b), whether a slice of rows runs step t, and where
// a thread of the persistent kernels (`sequence`, `resident`) and of the
// split-K steps (`splitk`) works. The tile sizes SEQ_ROWS, SEQ_HMAX,
// SEQ_PRIVATE, SK_UNITS, SK_ROWS, SK_THREADS, RES_KMAX, RES_HMAX and
// RES_WG_MAX are the host's (src/gpu/pipeline.rs `shared_consts`), which it
// emits before common.wgsl.

@group(0) @binding(0) var<uniform> P: StepParams;

// The time of step s of direction d.
fn time_of(d: u32, s: u32) -> u32 {
    return select(P.t_len - 1u - s, s, !reversed(d, P.rev0));
}

// The step flags of time t, batch row b (common.wgsl): F_VALID alone
// where the call has none. They follow the states in `hs`.
fn step_flags(t: u32, b: u32) -> u32 {
    if (P.flags == 0u) {
        return F_VALID;
    }
    return u32(f32(hs[P.flags_at + t * P.batch + b]));
}

// Whether any of the n rows from b0 runs step t (otherwise the recurrent
// product of those rows is skipped: padding passes the state through).
fn rows_active(t: u32, b0: u32, n: u32) -> bool {
    if (P.flags == 0u) {
        return true;
    }
    for (var i = 0u; i < n; i = i + 1u) {
        if (b0 + i < P.batch && (step_flags(t, b0 + i) & F_VALID) != 0u) {
            return true;
        }
    }
    return false;
}

// ---------------------------------------------------------------------------
// `sequence`: a workgroup of 64 threads owns up to P.rows <= SEQ_ROWS batch
// rows b0 .. b0 + nrows of direction d; thread lid computes units
// j = lid + 64u for u < units = ceil(H / 64). Rows past the slice read row
// b0 (r1, r2, r3: the rows the vec4 lanes read; their results are dropped).
struct SeqAt {
    d: u32, b0: u32, nrows: u32, units: u32,
    r1: u32, r2: u32, r3: u32,
}

fn seq_at(wid_in: vec3<u32>) -> SeqAt {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let b0 = wid.x * P.rows;
    let nrows = min(P.rows, P.batch - b0);
    return SeqAt(wid.y, b0, nrows, (P.hidden + 63u) / 64u,
                 select(0u, 1u, nrows > 1u), select(0u, 2u, nrows > 2u), select(0u, 3u, nrows > 3u));
}

// ---------------------------------------------------------------------------
// `splitk`: a workgroup of SK_THREADS threads owns SK_UNITS hidden units
// j0 .. j0+3 and SK_ROWS batch rows b0 .. b0+3 of direction d; thread
// li = q·SK_UNITS + u takes unit j0 + u (clamped into H for the loads: jl) and
// the K-slice k = q, q + SK_SLICES, ...; bl is the last batch row.
const SK_SLICES: u32 = SK_THREADS / SK_UNITS;
// The words between values c and c + 1 of the reduction (sk_red): a row of
// SK_THREADS padded by SK_UNITS, so that the SK_ROWS threads of a unit that
// read its sums (value q of unit u at q·SK_STRIDE + u) fall in different
// banks (`tests/access_patterns.rs`).
const SK_STRIDE: u32 = SK_THREADS + SK_UNITS;

struct SkAt {
    u: u32, q: u32, j0: u32, b0: u32,
    d: u32, jl: u32, bl: u32,
}

fn sk_at(wid_in: vec3<u32>, li: u32) -> SkAt {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let u = li % SK_UNITS;
    let j0 = wid.x * SK_UNITS;
    return SkAt(u, li / SK_UNITS, j0, wid.y * SK_ROWS, wid.z, min(j0 + u, P.hidden - 1u), P.batch - 1u);
}

// The tree reduction of `splitk` over the SK_SLICES slices of n values
// (sk_red[c·SK_STRIDE + li], c < n), in a fixed order: afterwards value c
// of unit u is at sk_red[c·SK_STRIDE + u]. Ends with a barrier.
fn sk_reduce(n: u32, q: u32, li: u32) {
    for (var stride = SK_SLICES / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (q < stride) {
            for (var c = 0u; c < n; c = c + 1u) {
                let o = c * SK_STRIDE + li;
                sk_red[o] = sk_red[o] + sk_red[o + stride * SK_UNITS];
            }
        }
    }
    workgroupBarrier();
}

// ---------------------------------------------------------------------------
// `resident`: a workgroup of RES_WG threads (the largest of 256, 512 and
// 1024 that the device allows, up to RES_WG_MAX) owns batch row b of
// direction d. Of the kn rows of the product (H forward, 3H backward),
// S = RES_WG / H slices of len = ceil(kn / S): thread li owns unit
// j = li mod H and slice q = li / H, rows [k0, k0 + klen) (klen 0 past the
// `slices` that are needed).
override RES_WG: u32 = 256u;
// The rows of the product a thread may own (forward: of W_hhᵀ, H rows;
// backward: 3·RES_L of W_hh's 3H): what the host chose RES_WG for, at most
// RES_KMAX. Iterations of the written-out loops past it are dead, so a
// thread keeps 3·RES_L weights in registers, within the registers a thread
// of RES_WG has (64 at 1024 threads on NVIDIA and on GCN).
override RES_L: u32 = RES_KMAX;

struct ResAt {
    b: u32, d: u32, j: u32, q: u32,
    slices: u32, k0: u32, klen: u32,
}

fn res_at(wid_in: vec3<u32>, li: u32, kn: u32) -> ResAt {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let H = P.hidden;
    let len = (kn + RES_WG / H - 1u) / (RES_WG / H);
    let slices = (kn + len - 1u) / len;
    let q = li / H;
    let k0 = min(q * len, kn);
    return ResAt(wid.x, wid.y, li % H, q, slices, k0, select(0u, min(len, kn - k0), q < slices));
}
