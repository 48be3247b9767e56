// gru_backward.wgsl: the fused backward step of a GRU layer, both directions.
//
// Backpropagation through time pops the tape from the last step to the
// first. With dh_s = dL/dh' of step s (the state written by step s), and the
// tape (r, z, n, gh_n, h = h_prev) of step s:
//
//   carry_s = grad_h_n                                       for s = T-1
//           = z_{s+1} dh_{s+1} + dG_h,{s+1} · W_hh             otherwise
//   dh_s    = carry_s + dOut[t]                  (the output at t also read h_s)
//   dn   = dh_s (1 - z)            da_n = dn (1 - n²)      (tanh')
//   dz   = dh_s (h - n)            da_z = dz z (1 - z)     (sigmoid')
//   dr   = da_n gh_n               da_r = dr r (1 - r)
//   dG_i = [da_r, da_z, da_n]                   the gradient of gi = x W_ihᵀ + b_ih
//   dG_h = [da_r, da_z, da_n r]                 the gradient of gh = h W_hhᵀ + b_hh
//
// and the step s = -1 computes only carry_{-1} = dL/dh0. The weight and bias
// gradients are summed over all steps afterwards, by gemm.wgsl and reduce.wgsl.
//
// Buffers (f32, row-major):
//   d_out  (T, B, D·H)       read   dL/d(layer output), time order
//   gates  (D, T, B, 4, H)   read   the forward's tape: r, z, n, gh_n
//   hs     (D, T+1, B, H)    read   slot s holds the state before step s
//   w_hh   (D, 3H, H)        read
//   dgh    (D, T, B, 3H)     rw     dG_h of every step, processing order
//   dgi    (T·B, D·3H)       rw     dG_i of every step, time order (as gi)
//   dh     (D, 2, B, H)      rw     dh_s in slot (s+2) mod 2; the host puts
//                                   grad_h_n in slot T mod 2 before step T-1,
//                                   and reads dL/dh0 from slot 1 after step -1
//
// One thread computes hidden unit j of up to four batch rows of one
// direction: the dot products of dG_h,{s+1}[b, :] with column j of W_hh, then
// the gate gradients of unit j. The dispatch is (ceil(H/64), ceil(B/4), D).
//
// With PRECOMPUTED (the window path of CPU adapters), dG_h,{s+1} · W_hh was
// computed by windows.wgsl before the dispatch, and binding 4 holds it
// instead of W_hh:
//   carry  (D, B, H)         read
// and dG_h of this step is also written, for the next product, into
//   gwin   (2, D, B·3H chunked) rw  parity s mod 2, direction d, at
//                                   ((k / kc)·B + b)·kc + k mod kc of the region
//
// Other time loops in this file: `sequence` (persistent), `splitk` (the
// product split along K across a workgroup) and `resident` (persistent,
// W_hh in registers); see their comments below.

override PRECOMPUTED: bool = false;
// With PRECOMPUTED on the storage family (`Products` there), the carry comes
// from gemm.wgsl and no gwin is written.
override STORAGE_GH: bool = false;

// RB: the reset-before form (n = tanh(gi_n + W_hn (r * h) + b_hn); the
// tape's fourth gate holds r * h), in two dispatches per step:
//   `step` with RB:  carry_s = z dh_{s+1} + [da_r, da_z]_{s+1} · W_h{r,z}
//                              + c2_{s+1}                (c2 from the scratch)
//                    dh_s, da_n = dh_s (1 - z)(1 - n²), da_z as above;
//                    dG_h = dG_i = [., da_z, da_n]
//   `rb_dr`:         d(rh) = da_n · W_hn, dr = d(rh) h, da_r = dr r (1 - r),
//                    the r columns of dG_h and dG_i, and c2_s = d(rh) r into
//                    the scratch (binding 8, (D, B, H)).
// The weight gradient of W_hn is then da_nᵀ (r * h), from the tape.
override RB: bool = false;
// RB_HALF: `step` runs `rb_dr` (the second half of a reset-before backward step) instead: one entry point on the
// step grid for both, the half chosen by this constant.
override RB_HALF: bool = false;

// The parameters P (binding 0), the step flags and the rows that run a step:
// gru_shared.wgsl, which the host composes after this file.
@group(0) @binding(1) var<storage, read> d_out: array<f32>;
@group(0) @binding(2) var<storage, read> gates: array<S>;
@group(0) @binding(3) var<storage, read> hs: array<S>;
@group(0) @binding(4) var<storage, read> w_hh: array<SW>;
@group(0) @binding(5) var<storage, read_write> dgh: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgi: array<f32>;
@group(0) @binding(7) var<storage, read_write> dh: array<f32>;
@group(0) @binding(8) var<storage, read_write> gwin: array<f32>;

// The offset in dh of the slot that carries dL/dh_s into step s, direction
// d: slot (s + 1) mod 2, where step s + 1 left it (for s = T - 1, where the
// host put grad_h_n); s >= -1.
fn dh_next_slot(d: u32, s: i32) -> u32 {
    return (d * 2u + u32(s + 3) % 2u) * P.batch * P.hidden;
}

// The gate gradients of unit j, batch row b, direction d at step su (time t)
// from dh_s = dhs: writes dG_h (processing order) and dG_i (time order) and
// returns dG_h of the unit's r, z, n rows. Shared by `step` and `sequence`.
fn gate_grads(d: u32, su: u32, t: u32, b: u32, j: u32, dhs: f32) -> vec3<f32> {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    let tp = ((d * T + su) * B + b) * 4u * H + j;
    let r = f32(gates[tp]);
    let z = f32(gates[tp + H]);
    let n = f32(gates[tp + 2u * H]);
    let ghn = f32(gates[tp + 3u * H]);
    let hp = f32(hs[((d * (T + 1u) + su) * B + b) * H + j]);
    let da_n = dhs * (1.0 - z) * (1.0 - n * n);
    let da_z = dhs * (hp - n) * z * (1.0 - z);
    let gh = ((d * T + su) * B + b) * h3 + j;
    let gi = (t * B + b) * (P.dirs * h3) + d * h3 + j;
    if (RB) {
        // The r columns come from `rb_dr`.
        dgh[gh + H] = da_z;
        dgh[gh + 2u * H] = da_n;
        dgi[gi + H] = da_z;
        dgi[gi + 2u * H] = da_n;
        return vec3<f32>(0.0, da_z, da_n);
    }
    let da_r = da_n * ghn * r * (1.0 - r);
    dgh[gh] = da_r;
    dgh[gh + H] = da_z;
    dgh[gh + 2u * H] = da_n * r;
    dgi[gi] = da_r;
    dgi[gi + H] = da_z;
    dgi[gi + 2u * H] = da_n;
    return vec3<f32>(da_r, da_z, da_n * r);
}

// Whether any of the n rows from b0 runs the step at processing position
// su (so that its dG_h may be nonzero).
fn rows_active_s(d: u32, su: u32, b0: u32, n: u32) -> bool {
    return rows_active(time_of(d, su), b0, n);
}

// Finishes backward step s (processing order; -1: dL/dh0 only) of unit j,
// batch row b, direction d from the carry c, the gradient that reaches h_s
// from step s + 1 (grad_h_n for s = T-1): cuts it where step s + 1 started
// from zero (an episode reset), adds dOut and writes the gate gradients (a
// padding step writes zeros and passes c through), and writes dh_s. Returns
// dG_h of the unit's r, z, n rows. Shared by every loop.
fn back_step(d: u32, s: i32, b: u32, j: u32, c_in: f32) -> vec3<f32> {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    var c = c_in;
    if (s + 1 < i32(T)) {
        let sn = u32(s + 1);
        if (zero_before(reversed(d, P.rev0), step_flags(time_of(d, sn), b))) {
            c = 0.0;
        }
    }
    let dh_at = (d * 2u + u32(s + 2) % 2u) * B * H + b * H + j;
    if (s < 0) {
        dh[dh_at] = c;
        return vec3<f32>(0.0);
    }
    let su = u32(s);
    let t = time_of(d, su);
    if ((step_flags(t, b) & F_VALID) == 0u) {
        let h3 = 3u * H;
        let gh = ((d * T + su) * B + b) * h3 + j;
        dgh[gh] = 0.0;
        dgh[gh + H] = 0.0;
        dgh[gh + 2u * H] = 0.0;
        let gi = (t * B + b) * (P.dirs * h3) + d * h3 + j;
        dgi[gi] = 0.0;
        dgi[gi + H] = 0.0;
        dgi[gi + 2u * H] = 0.0;
        dh[dh_at] = c;
        return vec3<f32>(0.0);
    }
    let dhs = c + d_out[(t * B + b) * (P.dirs * H) + d * H + j];
    let g = gate_grads(d, su, t, b, j, dhs);
    dh[dh_at] = dhs;
    return g;
}

// The second half of a reset-before backward step su (RB) for unit k,
// batch row b, direction d, from d(r * h)_k = drh: writes da_r into the r
// columns of dG_h and dG_i and c2 = d(r * h)_k r_k into the scratch
// (binding 8), zeros for a padding step, and returns da_r. Shared by
// `rb_dr`, `sequence` and `resident`.
fn rb_back_half(d: u32, su: u32, b: u32, k: u32, drh: f32) -> f32 {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    let t = time_of(d, su);
    var da_r = 0.0;
    var c2 = 0.0;
    if ((step_flags(t, b) & F_VALID) != 0u) {
        let r = f32(gates[((d * T + su) * B + b) * 4u * H + k]);
        let hp = f32(hs[((d * (T + 1u) + su) * B + b) * H + k]);
        da_r = drh * hp * r * (1.0 - r);
        c2 = drh * r;
    }
    dgh[((d * T + su) * B + b) * h3 + k] = da_r;
    dgi[(t * B + b) * (P.dirs * h3) + d * h3 + k] = da_r;
    gwin[(d * B + b) * H + k] = c2;
    return da_r;
}

// Where a thread of `step` and `rb_dr` works: hidden unit j of batch rows
// b0..b0+3 of direction d. `rows` are those rows clamped to the batch (rows
// past it are clamped for the loads and skipped for the stores). A thread
// past the hidden units or the batch has `inside` false and returns at once.
struct StepAt {
    inside: bool,
    j: u32,
    d: u32,
    b0: u32,
    rows: vec4<u32>,
}

fn step_at(wid_in: vec3<u32>, lid: vec3<u32>) -> StepAt {
    let gid = grid_id(wid_in, P.gx, P.gy, P.gz) * vec3<u32>(64u, 1u, 1u) + lid;
    let j = gid.x;
    let d = gid.z;
    let b0 = gid.y * 4u;
    let rows = min(vec4<u32>(b0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(P.batch - 1u));
    return StepAt(j < P.hidden && b0 < P.batch, j, d, b0, rows);
}

@compute @workgroup_size(64, 1, 1)
fn step(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = step_at(wid_in, lid);
    if (!at.inside) {
        return;
    }
    if (RB_HALF) {
        rb_dr(at);
        return;
    }
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let s = P.s;
    let h3 = 3u * H;
    let dh_next = dh_next_slot(at.d, s);

    var carry = vec4<f32>(0.0);
    if (s == i32(T) - 1) {
        // The host put grad_h_n in slot T mod 2, this one.
        for (var i = 0u; i < 4u; i = i + 1u) {
            carry[i] = dh[dh_next + at.rows[i] * H + at.j];
        }
    } else {
        let sn = u32(s + 1);
        let o = vec4<u32>((at.d * T + sn) * B * h3) + at.rows * h3;
        let wb = at.d * h3 * H + at.j;
        let kmax = select(select(h3, 2u * H, RB), 0u, PRECOMPUTED || !rows_active_s(at.d, sn, at.b0, 4u));
        for (var k = 0u; k < kmax; k = k + 1u) {
            let gv = vec4<f32>(dgh[o.x + k], dgh[o.y + k], dgh[o.z + k], dgh[o.w + k]);
            carry = fma(gv, vec4<f32>(f32(w_hh[wb + k * H])), carry);
        }
        // The direct path of h_s into h_{s+1} = (1 - z) n + z h_s.
        for (var i = 0u; i < 4u; i = i + 1u) {
            let b = at.rows[i];
            if (PRECOMPUTED) {
                // A row that did not run step s + 1 gets no product (the
                // storage family does not compute it there).
                carry[i] = 0.0;
                if ((step_flags(time_of(at.d, sn), b) & F_VALID) != 0u) {
                    carry[i] = f32(w_hh[(at.d * B + b) * H + at.j]);
                }
            }
            let z = f32(gates[((at.d * T + sn) * B + b) * 4u * H + H + at.j]);
            carry[i] = carry[i] + z * dh[dh_next + b * H + at.j];
            if (RB) {
                carry[i] = carry[i] + gwin[(at.d * B + b) * H + at.j];
            }
        }
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = at.b0 + i;
        if (b >= B) {
            break;
        }
        let g = back_step(at.d, s, b, at.j, carry[i]);
        if (s >= 0 && PRECOMPUTED && !STORAGE_GH && !RB) {
            let su = u32(s);
            let region = ((su % 2u) * P.dirs + at.d) * P.win_len;
            let kc = P.kc;
            gwin[region + ((at.j / kc) * B + b) * kc + at.j % kc] = g.x;
            gwin[region + (((H + at.j) / kc) * B + b) * kc + (H + at.j) % kc] = g.y;
            gwin[region + (((2u * H + at.j) / kc) * B + b) * kc + (2u * H + at.j) % kc] = g.z;
        }
    }
}

// rb_dr: the second half of a reset-before backward step s >= 0 (see RB):
// thread k of rows b0..b0+3 computes d(rh)_k = sum_j da_n[j] W_hn[j, k],
// then da_r and c2 of unit k. Run by `step` with RB_HALF, on its grid.
fn rb_dr(at: StepAt) {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    // Unit k here: the thread's column of W_hn.
    let k = at.j;
    let su = u32(P.s);
    let h3 = 3u * H;
    let o = vec4<u32>((at.d * T + su) * B * h3 + 2u * H) + at.rows * h3;
    let wb = (at.d * h3 + 2u * H) * H + k;
    var drh = vec4<f32>(0.0);
    let jmax = select(0u, H, rows_active_s(at.d, su, at.b0, 4u));
    for (var j = 0u; j < jmax; j = j + 1u) {
        let gv = vec4<f32>(dgh[o.x + j], dgh[o.y + j], dgh[o.z + j], dgh[o.w + j]);
        drh = fma(gv, vec4<f32>(f32(w_hh[wb + j * H])), drh);
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = at.b0 + i;
        if (b >= B) {
            break;
        }
        rb_back_half(at.d, su, b, k, drh[i]);
    }
}

// ---------------------------------------------------------------------------
// sequence: the whole backward time loop of one layer in one dispatch or a few (the
// persistent kernel), steps T-1 down to -1, as `step` computes them.
//
// Workgroup (64 threads) = (batch slice of up to SEQ_ROWS = P.rows rows,
// direction wid.y). dG_h of the previous step (s+1) of the slice's rows lives
// in workgroup memory (g_sh, 3H per row); thread `lid` computes units
// j = lid + 64u for u < ceil(H / 64): the dot products of those rows with
// column j of W_hh (vec4 lanes = rows), then the gate gradients of unit j,
// and writes dG_h, dG_i and dh as `step` does, keeping its own dG_h values
// in `gk` (private). After a barrier it copies them into g_sh (not read
// back from storage: g_sh is the one copy the workgroup's 16 KiB hold), and
// after another the next step begins. With
// W_PRIVATE the column j of W_hh (3H floats per unit) is first copied into
// private memory (3·ceil(H/64)·H <= 768 floats).
//
// A long time loop runs in several dispatches of P.steps steps each (the
// host keeps one invocation's loop iterations within the device's loop
// budget: llvmpipe ends an invocation's loops after 65535 iterations in
// all). Each dispatch first takes up the state the one before stored in
// storage (h from hs; backward: dG_h of the step after from dgh), so the
// results are bitwise those of one dispatch.

const SEQ_H3MAX: u32 = 3u * SEQ_HMAX;
override W_PRIVATE: bool = false;

var<workgroup> g_sh: array<f32, SEQ_ROWS * SEQ_H3MAX>;
var<private> wp: array<f32, SEQ_PRIVATE>;
// This thread's dG_h (r, z, n) of the step just taken: unit j = lid + 64u,
// row i at gk[u * SEQ_ROWS + i].
const SEQ_UMAX: u32 = SEQ_HMAX / 64u;
var<private> gk: array<vec3<f32>, SEQ_UMAX * SEQ_ROWS>;

// The thread's dG_h values kept in gk into g_sh (the r and z blocks, and
// without RB the n block, which RB's step wrote already), as `load_g_sh`
// would read them back from dgh.
fn keep_g_sh(at: SeqAt, lid: vec3<u32>) {
    let H = P.hidden;
    for (var u = 0u; u < at.units; u = u + 1u) {
        let j = lid.x + 64u * u;
        if (j < H) {
            for (var i = 0u; i < at.nrows; i = i + 1u) {
                let g = gk[u * SEQ_ROWS + i];
                g_sh[i * SEQ_H3MAX + j] = g.x;
                g_sh[i * SEQ_H3MAX + H + j] = g.y;
                if (!RB) {
                    g_sh[i * SEQ_H3MAX + 2u * H + j] = g.z;
                }
            }
        }
    }
}

// dG_h of step su of the slice's rows (the r and z blocks, and without RB
// the n block) from dgh into g_sh, units j = lid + 64u.
fn load_g_sh(at: SeqAt, su: u32, lid: vec3<u32>) {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    for (var u = 0u; u < at.units; u = u + 1u) {
        let j = lid.x + 64u * u;
        if (j < H) {
            for (var i = 0u; i < at.nrows; i = i + 1u) {
                let gh = ((at.d * T + su) * B + at.b0 + i) * h3 + j;
                g_sh[i * SEQ_H3MAX + j] = dgh[gh];
                g_sh[i * SEQ_H3MAX + H + j] = dgh[gh + H];
                if (!RB) {
                    g_sh[i * SEQ_H3MAX + 2u * H + j] = dgh[gh + 2u * H];
                }
            }
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn sequence(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = seq_at(wid_in);
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;

    if (W_PRIVATE) {
        for (var u = 0u; u < at.units; u = u + 1u) {
            let j = lid.x + 64u * u;
            if (j < H) {
                for (var k = 0u; k < h3; k = k + 1u) {
                    wp[u * h3 + k] = f32(w_hh[at.d * h3 * H + k * H + j]);
                }
            }
        }
    }

    // This dispatch runs steps first down to last (see `steps` in
    // common.wgsl); where a dispatch before it ran step first + 1, g_sh
    // starts from that step's dG_h as the dispatch stored it.
    let first = P.s;
    let last = max(-1, first - i32(P.steps) + 1);
    if (first + 1 < i32(T)) {
        load_g_sh(at, u32(first + 1), lid);
    }
    workgroupBarrier();

    for (var si = first; si >= last; si = si - 1) {
        let dh_next = dh_next_slot(at.d, si);
        for (var u = 0u; u < at.units; u = u + 1u) {
            let j = lid.x + 64u * u;
            if (j < H) {
                var carry = vec4<f32>(0.0);
                if (si == i32(T) - 1) {
                    for (var i = 0u; i < at.nrows; i = i + 1u) {
                        carry[i] = dh[dh_next + (at.b0 + i) * H + j];
                    }
                } else {
                    let kmax = select(0u, select(h3, 2u * H, RB), rows_active_s(at.d, u32(si + 1), at.b0, at.nrows));
                    for (var k = 0u; k < kmax; k = k + 1u) {
                        let gv = vec4<f32>(g_sh[k], g_sh[at.r1 * SEQ_H3MAX + k], g_sh[at.r2 * SEQ_H3MAX + k], g_sh[at.r3 * SEQ_H3MAX + k]);
                        var w: f32;
                        if (W_PRIVATE) {
                            w = wp[u * h3 + k];
                        } else {
                            w = f32(w_hh[at.d * h3 * H + k * H + j]);
                        }
                        carry = fma(gv, vec4<f32>(w), carry);
                    }
                    let sn = u32(si + 1);
                    for (var i = 0u; i < at.nrows; i = i + 1u) {
                        let b = at.b0 + i;
                        let z = f32(gates[((at.d * T + sn) * B + b) * 4u * H + H + j]);
                        carry[i] = carry[i] + z * dh[dh_next + b * H + j];
                        if (RB) {
                            carry[i] = carry[i] + gwin[(at.d * B + b) * H + j];
                        }
                    }
                }
                for (var i = 0u; i < at.nrows; i = i + 1u) {
                    let g = back_step(at.d, si, at.b0 + i, j, carry[i]);
                    gk[u * SEQ_ROWS + i] = g;
                    if (RB) {
                        // da_n of this step, for d(r * h) below.
                        g_sh[i * SEQ_H3MAX + 2u * H + j] = g.z;
                    }
                }
            }
        }
        workgroupBarrier();
        if (RB && si >= 0) {
            // The second half of a reset-before step (as `rb_dr`): unit k
            // of the slice's rows, d(r * h) = da_n W_hn from g_sh's n block.
            let su = u32(si);
            let t = time_of(at.d, su);
            let jmax = select(0u, H, rows_active_s(at.d, su, at.b0, at.nrows));
            for (var u = 0u; u < at.units; u = u + 1u) {
                let k = lid.x + 64u * u;
                if (k < H) {
                    var drh = vec4<f32>(0.0);
                    let wb = (at.d * h3 + 2u * H) * H + k;
                    for (var j = 0u; j < jmax; j = j + 1u) {
                        let o = 2u * H + j;
                        let gv = vec4<f32>(g_sh[o], g_sh[at.r1 * SEQ_H3MAX + o], g_sh[at.r2 * SEQ_H3MAX + o], g_sh[at.r3 * SEQ_H3MAX + o]);
                        drh = fma(gv, vec4<f32>(f32(w_hh[wb + j * H])), drh);
                    }
                    for (var i = 0u; i < at.nrows; i = i + 1u) {
                        gk[u * SEQ_ROWS + i].x = rb_back_half(at.d, su, at.b0 + i, k, drh[i]);
                    }
                }
            }
        }
        if (si >= 0) {
            keep_g_sh(at, lid);
        }
        workgroupBarrier();
    }
}

// ---------------------------------------------------------------------------
// splitk: the backward step with the product dG_h,{s+1} · W_hh split along K
// (3H), as the forward's `splitk`. Workgroup (256 threads) = (8 hidden units
// j0..j0+7, 4 batch rows b0..b0+3, direction d); the dispatch is
// (ceil(H/8), ceil(B/4), D). Thread li = q·8 + u sums k = q, q+32, ... < 3H
// of unit j0+u for the four rows into workgroup memory; a tree reduction
// over the 32 slices (fixed order); thread (u, row q < 4) then finishes the
// step of its (unit, row) as `step` does.

// (4 rows, SK_THREADS threads each, rows SK_STRIDE apart)
var<workgroup> sk_red: array<f32, 4u * SK_STRIDE>;

@compute @workgroup_size(SK_THREADS, 1, 1)
fn splitk(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let at = sk_at(wid_in, li);
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let s = P.s;
    let h3 = 3u * H;
    let dh_next = dh_next_slot(at.d, s);

    var carry = vec4<f32>(0.0);
    if (s != i32(T) - 1) {
        let gbase = (at.d * T + u32(s + 1)) * B * h3;
        let o0 = gbase + min(at.b0, at.bl) * h3;
        let o1 = gbase + min(at.b0 + 1u, at.bl) * h3;
        let o2 = gbase + min(at.b0 + 2u, at.bl) * h3;
        let o3 = gbase + min(at.b0 + 3u, at.bl) * h3;
        let wb = at.d * h3 * H + at.jl;
        let kmax = select(0u, select(h3, 2u * H, RB), rows_active_s(at.d, u32(s + 1), at.b0, SK_ROWS));
        for (var k = at.q; k < kmax; k = k + SK_SLICES) {
            let gv = vec4<f32>(dgh[o0 + k], dgh[o1 + k], dgh[o2 + k], dgh[o3 + k]);
            carry = fma(gv, vec4<f32>(f32(w_hh[wb + k * H])), carry);
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        sk_red[i * SK_STRIDE + li] = carry[i];
    }
    sk_reduce(4u, at.q, li);
    let j = at.j0 + at.u;
    let b = at.b0 + at.q;
    if (at.q < SK_ROWS && j < H && b < B) {
        var c: f32;
        if (s == i32(T) - 1) {
            // The host put grad_h_n in slot T mod 2, this one.
            c = dh[dh_next + b * H + j];
        } else {
            let z = f32(gates[((at.d * T + u32(s + 1)) * B + b) * 4u * H + H + j]);
            c = sk_red[at.q * SK_STRIDE + at.u] + z * dh[dh_next + b * H + j];
            if (RB) {
                c = c + gwin[(at.d * B + b) * H + j];
            }
        }
        back_step(at.d, s, b, j, c);
    }
}

// ---------------------------------------------------------------------------
// resident: the whole backward time loop of one layer in one dispatch (or a few), W_hh
// held in the threads' private memory, as the forward's `resident`.
//
// Workgroup (RES_WG threads) = (batch row b = wid.x, direction d = wid.y).
// With S = RES_WG / H and L = ceil(3H / S) (<= 3·RES_KMAX where the
// forward's slices fit), thread li owns unit j = li mod H and the K-slice
// q = li / H of the 3H rows of W_hh (column j, rows [qL, qL + L)) in `rw`.
// Each step: the partial dot product of dG_h,{s+1} (res_g, workgroup
// memory) with the slice into res_red, a barrier, then thread (j, q = 0)
// sums the partials in order, finishes the step as `step` and writes its
// dG_h into res_g; a barrier.
//
// A long time loop runs in several dispatches of P.steps steps each (the
// host keeps one invocation's loop iterations within the device's loop
// budget: llvmpipe ends an invocation's loops after 65535 iterations in
// all). Each dispatch first takes up the state the one before stored in
// storage (h from hs; backward: dG_h of the step after from dgh), so the
// results are bitwise those of one dispatch.

const RES_KMAX3: u32 = 3u * RES_KMAX;

var<workgroup> res_g: array<f32, 3u * RES_HMAX>;
// (S, H): S·H <= RES_WG <= RES_WG_MAX
var<workgroup> res_red: array<f32, RES_WG_MAX>;
var<private> rw: array<f32, RES_KMAX3>;

@compute @workgroup_size(RES_WG, 1, 1)
fn resident(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    let at = res_at(wid_in, li, h3);
    let wb = at.d * h3 * H + at.j;
    for (var kk = 0u; kk < 3u * RES_KMAX; kk = kk + 1u) { // unroll
        if (kk < 3u * RES_L && kk < at.klen) {
            rw[kk] = f32(w_hh[wb + (at.k0 + kk) * H]);
        }
    }

    // This dispatch runs steps first down to last (see `steps` in
    // common.wgsl), res_g starting from the dG_h of step first + 1 that a
    // dispatch before it stored.
    let first = P.s;
    let last = max(-1, first - i32(P.steps) + 1);
    if (first + 1 < i32(T) && at.q == 0u) {
        let gh = ((at.d * T + u32(first + 1)) * B + at.b) * h3 + at.j;
        res_g[at.j] = dgh[gh];
        res_g[H + at.j] = dgh[gh + H];
        res_g[2u * H + at.j] = dgh[gh + 2u * H];
    }
    workgroupBarrier();

    for (var si = first; si >= last; si = si - 1) {
        let dh_next = dh_next_slot(at.d, si);
        if (si != i32(T) - 1) {
            var a = 0.0;
            let kl = select(0u, at.klen, rows_active_s(at.d, u32(si + 1), at.b, 1u));
            for (var kk = 0u; kk < 3u * RES_KMAX; kk = kk + 1u) { // unroll
                // RB: the carry takes the r and z rows only (see RB).
                if (kk < 3u * RES_L && kk < kl && (!RB || at.k0 + kk < 2u * H)) {
                    a = fma(res_g[at.k0 + kk], rw[kk], a);
                }
            }
            if (at.q < at.slices) {
                res_red[at.q * H + at.j] = a;
            }
        }
        workgroupBarrier();
        if (at.q == 0u) {
            var c: f32;
            if (si == i32(T) - 1) {
                c = dh[dh_next + at.b * H + at.j];
            } else {
                var sum = 0.0;
                for (var p = 0u; p < at.slices; p = p + 1u) {
                    sum = sum + res_red[p * H + at.j];
                }
                let z = f32(gates[((at.d * T + u32(si + 1)) * B + at.b) * 4u * H + H + at.j]);
                c = sum + z * dh[dh_next + at.b * H + at.j];
                if (RB) {
                    c = c + gwin[(at.d * B + at.b) * H + at.j];
                }
            }
            let g = back_step(at.d, si, at.b, at.j, c);
            if (si >= 0) {
                res_g[at.j] = g.x;
                res_g[H + at.j] = g.y;
                res_g[2u * H + at.j] = g.z;
            }
        }
        workgroupBarrier();
        if (RB && si >= 0) {
            // The second half (as `rb_dr`): d(r * h) of unit j from the n rows
            // of its column of W_hh and da_n in res_g's n block, then da_r
            // (res_g's r block) and c2 (the scratch).
            let su = u32(si);
            var a2 = 0.0;
            let kl2 = select(0u, at.klen, rows_active_s(at.d, su, at.b, 1u));
            for (var kk = 0u; kk < 3u * RES_KMAX; kk = kk + 1u) { // unroll
                if (kk < 3u * RES_L && kk < kl2 && at.k0 + kk >= 2u * H) {
                    a2 = fma(res_g[at.k0 + kk], rw[kk], a2);
                }
            }
            if (at.q < at.slices) {
                res_red[at.q * H + at.j] = a2;
            }
            workgroupBarrier();
            if (at.q == 0u) {
                var drh = 0.0;
                for (var p = 0u; p < at.slices; p = p + 1u) {
                    drh = drh + res_red[p * H + at.j];
                }
                res_g[at.j] = rb_back_half(at.d, su, at.b, at.j, drh);
            }
            workgroupBarrier();
        }
    }
}
