// gru_forward.wgsl: the fused forward step of a GRU layer, both directions.
//
// For time step s of the processing order (t = s forwards, t = T-1-s for a
// direction that runs in reverse time: d = 1, or d = 0 of a reverse layer,
// see `reversed` in common.wgsl), with gi = X·W_ihᵀ + b_ih precomputed for all steps
// by gemm.wgsl, and h = h_{s} the state before the step:
//
//   gh = h · W_hhᵀ + b_hh                          (the recurrent product, here)
//   r  = sigmoid(gi_r + gh_r)
//   z  = sigmoid(gi_z + gh_z)
//   n  = tanh(gi_n + r * gh_n)
//   h' = (1 - z) * n + z * h
//
// Buffers (f32, row-major):
//   gi     (T·B, D·3H)       read   row t·B + b, column d·3H + gate·H + j
//   w_hhT  (D, H, 3H)        read   W_hh transposed, so that threads of
//                                   neighbouring units j read neighbouring words
//   b_hh   (D·3H)            read   (ignored without bias)
//   hs     (D, T+1, B, H)    rw     slot 0 holds h0, slot s+1 the state after step s
//                                   (without TAPE a ring of two slots, see hs_slot)
//   out    (T, B, D·H)       rw     the layer's output, h' at [t, b, d·H + j]
//   gates  (D, T, B, 4, H)   rw     the tape: r, z, n and gh_n of every step
//
// One thread computes hidden unit j of up to four batch rows b0..b0+3 of one
// direction: the three dot products of h[b, :] with columns j, H+j and 2H+j
// of W_hhᵀ, then the gate math. The dispatch is (ceil(H/64), ceil(B/4), D).
//
// With PRECOMPUTED (the window path of CPU adapters), gh = h·W_hhᵀ + b_hh of
// this step was computed by windows.wgsl before the dispatch, and
// binding 2 holds it instead of W_hhᵀ:
//   gh     (D, B, 3H)        read   (bias included)
// and the new state is also written, for the next step's product, into
//   hwin   (2, D, B·H chunked) rw   parity (s+1) mod 2, direction d, at
//                                   ((j / kc)·B + b)·kc + j mod kc of the region
//
// Other time loops in this file: `sequence` (persistent), `splitk` (the
// product split along K across a workgroup) and `resident` (persistent,
// W_hh in registers); see their comments below.

override PRECOMPUTED: bool = false;
// With PRECOMPUTED on the storage family (`Products` there), gh comes from
// gemm.wgsl without the bias: the step adds b_hh and writes no hwin.
override STORAGE_GH: bool = false;
// RB: the reset-before form, n = tanh(gi_n + W_hn (r * h) + b_hn), in two
// dispatches per step: `rb_rz` computes r, z and r * h into the scratch
// (binding 7, (D, B, 3H): r, z, r·h per row), then `step` with RB computes
// gh_n = W_hn (r * h) + b_hn from it and applies the gates. The tape's
// fourth gate holds r * h instead of gh_n.
override RB: bool = false;
// RB_HALF: `step` runs `rb_rz` (r, z and r * h of a reset-before step) instead: one entry point on the
// step grid for both, the half chosen by this constant.
override RB_HALF: bool = false;
// Without TAPE (inference that keeps no tape) the gates are not written,
// binding 6 is a placeholder, and hs is a ring of two slots (D, 2, B, H):
// slot s at s mod 2.
override TAPE: bool = true;

// The offset of slot s of direction d in hs.
fn hs_slot(d: u32, s: u32) -> u32 {
    if (TAPE) {
        return (d * (P.t_len + 1u) + s) * P.batch * P.hidden;
    }
    return (d * 2u + s % 2u) * P.batch * P.hidden;
}

// The parameters P (binding 0), the step flags and the rows that run a step:
// gru_shared.wgsl, which the host composes after this file.
@group(0) @binding(1) var<storage, read> gi: array<f32>;
@group(0) @binding(2) var<storage, read> w_hhT: array<SW>;
@group(0) @binding(3) var<storage, read> b_hh: array<S>;
@group(0) @binding(4) var<storage, read_write> hs: array<S>;
@group(0) @binding(5) var<storage, read_write> out: array<S>;
@group(0) @binding(6) var<storage, read_write> gates: array<S>;
@group(0) @binding(7) var<storage, read_write> hwin: array<f32>;

// b_hh of unit j of direction d: its r, z and n rows (0 without biases).
fn gh_bias(d: u32, j: u32) -> vec3<f32> {
    if (P.has_bias == 0u) {
        return vec3<f32>(0.0);
    }
    let H = P.hidden;
    let o = d * 3u * H + j;
    return vec3<f32>(f32(b_hh[o]), f32(b_hh[o + H]), f32(b_hh[o + 2u * H]));
}

// The gate math of unit j, batch row b, direction d at step s (time t), from
// gh = h·W_hhᵀ + b_hh of that unit: writes h', the output and the tape, and
// returns the state the next step reads (h', or 0 where the next step starts
// from zero). A padding step (not F_VALID) passes h through, writes a zero
// output and a tape with z = 1 and r = n = gh_n = 0. Shared by every loop.
fn gate_step(d: u32, s: u32, t: u32, b: u32, j: u32, ghr: f32, ghz: f32, ghn: f32) -> f32 {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    let hp = f32(hs[hs_slot(d, s) + b * H + j]);
    var r = 0.0;
    var z = 1.0;
    var n = 0.0;
    var gn = 0.0;
    var hn = hp;
    var o = 0.0;
    if ((step_flags(t, b) & F_VALID) != 0u) {
        let g = (t * B + b) * (P.dirs * h3) + d * h3;
        if (RB) {
            // r and z from `rb_rz`; gh_n = W_hn (r * h) + b_hn; the tape
            // keeps r * h in gh_n's place (the backward's dW_hn needs it).
            let q = (d * B + b) * h3;
            r = hwin[q + j];
            z = hwin[q + H + j];
            n = tanh_stable(gi[g + 2u * H + j] + ghn);
            gn = hwin[q + 2u * H + j];
        } else {
            r = sigmoid_stable(gi[g + j] + ghr);
            z = sigmoid_stable(gi[g + H + j] + ghz);
            n = tanh_stable(gi[g + 2u * H + j] + r * ghn);
            gn = ghn;
        }
        hn = (1.0 - z) * n + z * hp;
        o = hn;
    }
    var keep = hn;
    if (s + 1u < T) {
        let tn = select(t - 1u, t + 1u, !reversed(d, P.rev0));
        if (zero_before(reversed(d, P.rev0), step_flags(tn, b))) {
            keep = 0.0;
        }
    }
    // The state as stored (rounded to S): what the next step and the tape read.
    let stored = S(keep);
    hs[hs_slot(d, s + 1u) + b * H + j] = stored;
    out[(t * B + b) * (P.dirs * H) + d * H + j] = S(o);
    if (TAPE) {
        let tp = ((d * T + s) * B + b) * 4u * H + j;
        gates[tp] = S(r);
        gates[tp + H] = S(z);
        gates[tp + 2u * H] = S(n);
        gates[tp + 3u * H] = S(gn);
    }
    return f32(stored);
}

// The first half of a reset-before step (RB) for unit j, batch row b,
// direction d at time t, from gh_r, gh_z (bias included) and the state h_j:
// writes r, z and r_j h_j into the scratch (binding 7) and returns r_j h_j.
// Shared by `rb_rz`, `sequence`, `splitk` and `resident`.
fn rb_half(d: u32, t: u32, b: u32, j: u32, ghr: f32, ghz: f32, hj: f32) -> f32 {
    let H = P.hidden;
    let h3 = 3u * H;
    let g = (t * P.batch + b) * (P.dirs * h3) + d * h3;
    let r = sigmoid_stable(gi[g + j] + ghr);
    let z = sigmoid_stable(gi[g + H + j] + ghz);
    let q = (d * P.batch + b) * h3;
    let rh = r * hj;
    hwin[q + j] = r;
    hwin[q + H + j] = z;
    hwin[q + 2u * H + j] = rh;
    return rh;
}

// Where a thread of `step` and `rb_rz` works: hidden unit j of batch rows
// b0..b0+3 of direction d at step s (time t). `rows` are those rows clamped
// to the batch (rows past it are clamped for the loads and skipped for the
// stores), `o` the offsets of their states h_s in hs, `hprev` that of slot s
// and `wb` that of direction d in W_hhᵀ. A thread past the hidden units or
// the batch has `inside` false and returns at once.
struct StepAt {
    inside: bool,
    j: u32,
    d: u32,
    b0: u32,
    s: u32,
    t: u32,
    hprev: u32,
    wb: u32,
    rows: vec4<u32>,
    o: vec4<u32>,
}

fn step_at(wid_in: vec3<u32>, lid: vec3<u32>) -> StepAt {
    let gid = grid_id(wid_in, P.gx, P.gy, P.gz) * vec3<u32>(64u, 1u, 1u) + lid;
    let H = P.hidden;
    let B = P.batch;
    let j = gid.x;
    let d = gid.z;
    let b0 = gid.y * 4u;
    let s = u32(P.s);
    let t = time_of(d, s);
    let hprev = hs_slot(d, s);
    let wb = d * H * (3u * H);
    let rows = min(vec4<u32>(b0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(B - 1u));
    let o = vec4<u32>(hprev) + rows * H;
    return StepAt(j < H && b0 < B, j, d, b0, s, t, hprev, wb, rows, o);
}

@compute @workgroup_size(64, 1, 1)
fn step(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = step_at(wid_in, lid);
    if (!at.inside) {
        return;
    }
    if (RB_HALF) {
        rb_rz(at);
        return;
    }
    let H = P.hidden;
    let B = P.batch;
    let h3 = 3u * H;

    var ar = vec4<f32>(0.0);
    var az = vec4<f32>(0.0);
    var an = vec4<f32>(0.0);
    let live = rows_active(at.t, at.b0, 4u);
    if (RB && live && !PRECOMPUTED) {
        // gh_n = W_hn (r * h), r * h from `rb_rz` in the scratch.
        let q = (vec4<u32>(at.d * B) + at.rows) * h3 + vec4<u32>(2u * H);
        for (var k = 0u; k < H; k = k + 1u) {
            let wn = f32(w_hhT[at.wb + k * h3 + at.j + 2u * H]);
            let hv = vec4<f32>(hwin[q.x + k], hwin[q.y + k], hwin[q.z + k], hwin[q.w + k]);
            an = fma(hv, vec4<f32>(wn), an);
        }
    }
    let kmax = select(H, 0u, PRECOMPUTED || RB || !live);
    for (var k = 0u; k < kmax; k = k + 1u) {
        let w = at.wb + k * h3 + at.j;
        let wr = f32(w_hhT[w]);
        let wz = f32(w_hhT[w + H]);
        let wn = f32(w_hhT[w + 2u * H]);
        let hv = vec4<f32>(f32(hs[at.o.x + k]), f32(hs[at.o.y + k]), f32(hs[at.o.z + k]), f32(hs[at.o.w + k]));
        ar = fma(hv, vec4<f32>(wr), ar);
        az = fma(hv, vec4<f32>(wz), az);
        an = fma(hv, vec4<f32>(wn), an);
    }
    var bh = vec3<f32>(0.0);
    if (!PRECOMPUTED || STORAGE_GH) {
        bh = gh_bias(at.d, at.j);
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = at.b0 + i;
        if (b >= B) {
            break;
        }
        var ghr = ar[i] + bh.x;
        var ghz = az[i] + bh.y;
        var ghn = an[i] + bh.z;
        if (PRECOMPUTED) {
            let o = (at.d * B + b) * h3 + at.j;
            ghr = f32(w_hhT[o]) + bh.x;
            ghz = f32(w_hhT[o + H]) + bh.y;
            ghn = f32(w_hhT[o + 2u * H]) + bh.z;
        }
        let hn = gate_step(at.d, at.s, at.t, b, at.j, ghr, ghz, ghn);
        if (PRECOMPUTED && !STORAGE_GH && !RB) {
            let region = (((at.s + 1u) % 2u) * P.dirs + at.d) * P.win_len;
            hwin[region + ((at.j / P.kc) * B + b) * P.kc + at.j % P.kc] = hn;
        }
    }
}

// rb_rz: the first half of a reset-before step (see RB): thread j of rows
// b0..b0+3 computes gh_r, gh_z = W_h{r,z} h + b_h{r,z}, r, z, and writes r,
// z and r_j h_j into the scratch. Run by `step` with RB_HALF, on its grid.
fn rb_rz(at: StepAt) {
    let H = P.hidden;
    let B = P.batch;
    let h3 = 3u * H;
    var ar = vec4<f32>(0.0);
    var az = vec4<f32>(0.0);
    // With PRECOMPUTED (the `products` loop), gh_r and gh_z come from
    // gemm.wgsl in binding 2, (D, B, 3H) without the bias.
    let kmax = select(0u, H, rows_active(at.t, at.b0, 4u) && !PRECOMPUTED);
    for (var k = 0u; k < kmax; k = k + 1u) {
        let w = at.wb + k * h3 + at.j;
        let hv = vec4<f32>(f32(hs[at.o.x + k]), f32(hs[at.o.y + k]), f32(hs[at.o.z + k]), f32(hs[at.o.w + k]));
        ar = fma(hv, vec4<f32>(f32(w_hhT[w])), ar);
        az = fma(hv, vec4<f32>(f32(w_hhT[w + H])), az);
    }
    let bh = gh_bias(at.d, at.j);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = at.b0 + i;
        if (b >= B) {
            break;
        }
        var pr = ar[i];
        var pz = az[i];
        if (PRECOMPUTED) {
            pr = f32(w_hhT[(at.d * B + b) * h3 + at.j]);
            pz = f32(w_hhT[(at.d * B + b) * h3 + H + at.j]);
        }
        rb_half(at.d, at.t, b, at.j, pr + bh.x, pz + bh.y, f32(hs[at.hprev + b * H + at.j]));
    }
}

// ---------------------------------------------------------------------------
// sequence: all T steps of one layer in one dispatch, or a few (the persistent kernel).
//
// Batch rows never depend on each other, so a workgroup that owns a slice of
// up to SEQ_ROWS batch rows of one direction can run the whole time loop on
// its own: the state of its rows lives in workgroup memory (h_sh), and the
// only synchronisation is a workgroupBarrier between steps. No workgroup
// waits for another, so this is legal on every backend. The equations, the
// buffers and the layouts are those of `step` above; the input projections gi
// come from one GEMM before it, as there.
//
// Workgroup (64 threads) = (batch slice of P.rows rows, direction wid.y); thread
// `lid` computes units j = lid + 64u for u < ceil(H / 64) (H <= SEQ_HMAX), the
// three dot products of the rows' states with columns j, H+j, 2H+j of W_hhᵀ,
// for all rows of the slice at once (vec4 lanes = rows). With W_PRIVATE the
// thread first copies those columns into private memory (3·ceil(H/64)·H <=
// 768 floats): on CPU adapters private memory is fast and storage loads in
// loops are slow; GPUs read them through the cache instead. Each step writes
// h', the output and the tape as `step` does, and h' into the other half of
// h_sh (double-buffered: one barrier a step; the state as stored, rounded to
// S, as the next step would read it from storage).
//
// A long time loop runs in several dispatches of P.steps steps each (the
// host keeps one invocation's loop iterations within the device's loop
// budget: llvmpipe ends an invocation's loops after 65535 iterations in
// all). Each dispatch first takes up the state the one before stored in
// storage (h from hs; backward: dG_h of the step after from dgh), so the
// results are bitwise those of one dispatch.

override W_PRIVATE: bool = false;

// The state of the slice's rows, double-buffered: step s reads the half of
// parity s mod 2 (`seq_hb`) and writes h' into the other, so that a step
// needs one barrier and never reads back from storage what it wrote there.
var<workgroup> h_sh: array<f32, 2u * SEQ_ROWS * SEQ_HMAX>;
// r * h of the slice's rows (RB only)
var<workgroup> rh_sh: array<f32, SEQ_ROWS * SEQ_HMAX>;
var<private> wp: array<f32, SEQ_PRIVATE>;

// The r, z and n entries of W_hhᵀ's row k for unit j, the thread's u-th
// (`wb`: direction d's offset in W_hhᵀ): from private memory with W_PRIVATE,
// else from storage.
fn seq_w(u: u32, j: u32, k: u32, wb: u32) -> vec3<f32> {
    let H = P.hidden;
    if (W_PRIVATE) {
        let o = (u * 3u) * H + k;
        return vec3<f32>(wp[o], wp[o + H], wp[o + 2u * H]);
    }
    let w = wb + k * (3u * H) + j;
    return vec3<f32>(f32(w_hhT[w]), f32(w_hhT[w + H]), f32(w_hhT[w + 2u * H]));
}

// The offset in h_sh of the state before step s.
fn seq_hb(s: u32) -> u32 {
    return (s % 2u) * SEQ_ROWS * SEQ_HMAX;
}

@compute @workgroup_size(64, 1, 1)
fn sequence(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = seq_at(wid_in);
    let H = P.hidden;
    let T = P.t_len;
    let h3 = 3u * H;
    let wb = at.d * H * h3;

    // This dispatch runs steps s0 .. s1 - 1 (see `steps` in common.wgsl): the
    // state of its first step is the one the last dispatch stored.
    let s0 = u32(P.s);
    let s1 = min(T, s0 + P.steps);
    for (var u = 0u; u < at.units; u = u + 1u) {
        let j = lid.x + 64u * u;
        if (j < H) {
            for (var r = 0u; r < SEQ_ROWS; r = r + 1u) {
                let b = at.b0 + min(r, at.nrows - 1u);
                h_sh[seq_hb(s0) + r * SEQ_HMAX + j] = f32(hs[hs_slot(at.d, s0) + b * H + j]);
            }
            if (W_PRIVATE) {
                for (var k = 0u; k < H; k = k + 1u) {
                    let w = wb + k * h3 + j;
                    let o = (u * 3u) * H + k;
                    wp[o] = f32(w_hhT[w]);
                    wp[o + H] = f32(w_hhT[w + H]);
                    wp[o + 2u * H] = f32(w_hhT[w + 2u * H]);
                }
            }
        }
    }
    workgroupBarrier();

    for (var s = s0; s < s1; s = s + 1u) {
        let t = time_of(at.d, s);
        let hb = seq_hb(s);
        let live = rows_active(t, at.b0, at.nrows);
        if (RB) {
            // The first half of a reset-before step (as `rb_rz`): r, z and
            // r * h of the slice's rows into the scratch, r * h into rh_sh.
            for (var u = 0u; u < at.units; u = u + 1u) {
                let j = lid.x + 64u * u;
                if (j < H) {
                    var ar = vec4<f32>(0.0);
                    var az = vec4<f32>(0.0);
                    let kmax = select(0u, H, live);
                    for (var k = 0u; k < kmax; k = k + 1u) {
                        let hv = vec4<f32>(h_sh[hb + k], h_sh[hb + at.r1 * SEQ_HMAX + k], h_sh[hb + at.r2 * SEQ_HMAX + k], h_sh[hb + at.r3 * SEQ_HMAX + k]);
                        let w = seq_w(u, j, k, wb);
                        ar = fma(hv, vec4<f32>(w.x), ar);
                        az = fma(hv, vec4<f32>(w.y), az);
                    }
                    let bh = gh_bias(at.d, j);
                    for (var i = 0u; i < at.nrows; i = i + 1u) {
                        let hj = h_sh[hb + i * SEQ_HMAX + j];
                        rh_sh[i * SEQ_HMAX + j] = rb_half(at.d, t, at.b0 + i, j, ar[i] + bh.x, az[i] + bh.y, hj);
                    }
                }
            }
            workgroupBarrier();
        }
        for (var u = 0u; u < at.units; u = u + 1u) {
            let j = lid.x + 64u * u;
            if (j < H) {
                var ar = vec4<f32>(0.0);
                var az = vec4<f32>(0.0);
                var an = vec4<f32>(0.0);
                let kmax = select(0u, H, live);
                for (var k = 0u; k < kmax; k = k + 1u) {
                    var hv = vec4<f32>(h_sh[hb + k], h_sh[hb + at.r1 * SEQ_HMAX + k], h_sh[hb + at.r2 * SEQ_HMAX + k], h_sh[hb + at.r3 * SEQ_HMAX + k]);
                    if (RB) {
                        // gh_n = W_hn (r * h)
                        hv = vec4<f32>(rh_sh[k], rh_sh[at.r1 * SEQ_HMAX + k], rh_sh[at.r2 * SEQ_HMAX + k], rh_sh[at.r3 * SEQ_HMAX + k]);
                    }
                    let w = seq_w(u, j, k, wb);
                    ar = fma(hv, vec4<f32>(w.x), ar);
                    az = fma(hv, vec4<f32>(w.y), az);
                    an = fma(hv, vec4<f32>(w.z), an);
                }
                let bh = gh_bias(at.d, j);
                for (var i = 0u; i < at.nrows; i = i + 1u) {
                    let hn = gate_step(at.d, s, t, at.b0 + i, j, ar[i] + bh.x, az[i] + bh.y, an[i] + bh.z);
                    h_sh[seq_hb(s + 1u) + i * SEQ_HMAX + j] = hn;
                }
            }
        }
        workgroupBarrier();
    }
}

// ---------------------------------------------------------------------------
// splitk: the step with the recurrent product split along K, for small
// batches on GPUs: many workgroups even at B = 1.
//
// Workgroup (256 threads) = (SK_UNITS = 8 hidden units j0..j0+7, SK_ROWS = 4
// batch rows b0..b0+3, direction d); the dispatch is (ceil(H/8), ceil(B/4), D).
// Thread li = q·8 + u computes, for unit j0+u and the four rows, the partial
// dot products of the K-slice k = q, q+32, q+64, ... (SK_SLICES = 32 slices;
// the 8 units of a row of W_hhᵀ are one 32-byte sector):
// 12 values (3 gates x 4 rows) into workgroup memory, then a tree reduction
// over the slices (fixed order, so the result is the same on every run), then
// thread (u, row q < 4) applies the gate math of its (unit, row) as `step`.

// (12 values: gate·4 + row, SK_THREADS threads each, rows SK_STRIDE apart)
var<workgroup> sk_red: array<f32, 12u * SK_STRIDE>;

@compute @workgroup_size(SK_THREADS, 1, 1)
fn splitk(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let at = sk_at(wid_in, li);
    let H = P.hidden;
    let B = P.batch;
    let s = u32(P.s);
    let t = time_of(at.d, s);
    let h3 = 3u * H;
    let hprev = hs_slot(at.d, s);
    let o0 = hprev + min(at.b0, at.bl) * H;
    let o1 = hprev + min(at.b0 + 1u, at.bl) * H;
    let o2 = hprev + min(at.b0 + 2u, at.bl) * H;
    let o3 = hprev + min(at.b0 + 3u, at.bl) * H;
    let wb = at.d * H * h3 + at.jl;

    var ar = vec4<f32>(0.0);
    var az = vec4<f32>(0.0);
    var an = vec4<f32>(0.0);
    let kmax = select(0u, H, rows_active(t, at.b0, SK_ROWS));
    // RB: phase 0 computes r and z into the scratch (as `rb_rz`), phase 1
    // gh_n = W_hn (r * h) from it and the gates.
    let rb_n = RB && P.phase == 1u;
    let q0 = (at.d * B + min(at.b0, at.bl)) * h3 + 2u * H;
    let q1 = (at.d * B + min(at.b0 + 1u, at.bl)) * h3 + 2u * H;
    let q2 = (at.d * B + min(at.b0 + 2u, at.bl)) * h3 + 2u * H;
    let q3 = (at.d * B + min(at.b0 + 3u, at.bl)) * h3 + 2u * H;
    for (var k = at.q; k < kmax; k = k + SK_SLICES) {
        let w = wb + k * h3;
        if (rb_n) {
            let rh = vec4<f32>(hwin[q0 + k], hwin[q1 + k], hwin[q2 + k], hwin[q3 + k]);
            an = fma(rh, vec4<f32>(f32(w_hhT[w + 2u * H])), an);
        } else {
            let hv = vec4<f32>(f32(hs[o0 + k]), f32(hs[o1 + k]), f32(hs[o2 + k]), f32(hs[o3 + k]));
            ar = fma(hv, vec4<f32>(f32(w_hhT[w])), ar);
            az = fma(hv, vec4<f32>(f32(w_hhT[w + H])), az);
            if (!RB) {
                an = fma(hv, vec4<f32>(f32(w_hhT[w + 2u * H])), an);
            }
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        sk_red[i * SK_STRIDE + li] = ar[i];
        sk_red[(4u + i) * SK_STRIDE + li] = az[i];
        sk_red[(8u + i) * SK_STRIDE + li] = an[i];
    }
    sk_reduce(12u, at.q, li);
    let j = at.j0 + at.u;
    let b = at.b0 + at.q;
    if (at.q < SK_ROWS && j < H && b < B) {
        let bh = gh_bias(at.d, j);
        let ghr = sk_red[at.q * SK_STRIDE + at.u] + bh.x;
        let ghz = sk_red[(4u + at.q) * SK_STRIDE + at.u] + bh.y;
        let ghn = sk_red[(8u + at.q) * SK_STRIDE + at.u] + bh.z;
        if (RB && P.phase == 0u) {
            rb_half(at.d, t, b, j, ghr, ghz, f32(hs[hprev + b * H + j]));
        } else {
            gate_step(at.d, s, t, b, j, ghr, ghz, ghn);
        }
    }
}

// ---------------------------------------------------------------------------
// resident: all T steps of one layer in one dispatch (or a few), W_hh held in the
// threads' private memory (registers on GPUs) for the whole loop.
//
// Workgroup (RES_WG threads, the largest the device allows of 256, 512 and
// 1024) = (batch row b = wid.x, direction d = wid.y); no workgroup waits for
// another. With S = RES_WG / H slices of L = ceil(H / S) <= RES_KMAX rows of
// W_hhᵀ (the host checks), thread li owns unit j = li mod H and K-slice
// q = li / H (k in [qL, qL + L)): it keeps W_hhᵀ[k, j], [k, H+j], [k, 2H+j]
// of its slice in `rw` (3·RES_KMAX floats; the loops over it are marked
// `// unroll`, which the host writes out, so that every index into `rw` is
// a constant and compilers keep it in registers: wgpu's loop bounding keeps
// them from unrolling loops themselves). Each step: partial dot
// products of the state (res_h, workgroup memory) with the slice into
// res_red, a barrier, then thread (j, q = 0) sums the S partials in order
// q = 0, 1, ... (reproducible), applies the gate math as `step` and writes
// h' into res_h; a barrier; the next step.
//
// A long time loop runs in several dispatches of P.steps steps each (the
// host keeps one invocation's loop iterations within the device's loop
// budget: llvmpipe ends an invocation's loops after 65535 iterations in
// all). Each dispatch first takes up the state the one before stored in
// storage (h from hs; backward: dG_h of the step after from dgh), so the
// results are bitwise those of one dispatch.

var<workgroup> res_h: array<f32, RES_HMAX>;
// r * h (RB only)
var<workgroup> res_rh: array<f32, RES_HMAX>;
// (3, S, H): S·H <= RES_WG <= RES_WG_MAX
var<workgroup> res_red: array<f32, 3u * RES_WG_MAX>;
var<private> rw: array<f32, 3u * RES_KMAX>;

@compute @workgroup_size(RES_WG, 1, 1)
fn resident(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let H = P.hidden;
    let T = P.t_len;
    let at = res_at(wid_in, li, H);
    let h3 = 3u * H;
    let wb = at.d * H * h3 + at.j;
    for (var kk = 0u; kk < RES_KMAX; kk = kk + 1u) { // unroll
        if (kk < RES_L && kk < at.klen) {
            let w = wb + (at.k0 + kk) * h3;
            rw[kk] = f32(w_hhT[w]);
            rw[RES_KMAX + kk] = f32(w_hhT[w + H]);
            rw[2u * RES_KMAX + kk] = f32(w_hhT[w + 2u * H]);
        }
    }
    let bh = gh_bias(at.d, at.j);
    // This dispatch runs steps s0 .. s1 - 1 (see `steps` in common.wgsl),
    // from the state the last dispatch stored.
    let s0 = u32(P.s);
    let s1 = min(T, s0 + P.steps);
    if (li < H) {
        res_h[li] = f32(hs[hs_slot(at.d, s0) + at.b * H + li]);
    }
    workgroupBarrier();

    for (var s = s0; s < s1; s = s + 1u) {
        let t = time_of(at.d, s);
        let kl = select(0u, at.klen, rows_active(t, at.b, 1u));
        // This thread's slices of the products with h: r, z and n (r and z
        // only in the reset-before form, whose n product takes r * h).
        var ar = 0.0;
        var az = 0.0;
        var an = 0.0;
        for (var kk = 0u; kk < RES_KMAX; kk = kk + 1u) { // unroll
            if (kk < RES_L && kk < kl) {
                let hv = res_h[at.k0 + kk];
                ar = fma(hv, rw[kk], ar);
                az = fma(hv, rw[RES_KMAX + kk], az);
                if (!RB) {
                    an = fma(hv, rw[2u * RES_KMAX + kk], an);
                }
            }
        }
        if (at.q < at.slices) {
            res_red[at.q * H + at.j] = ar;
            res_red[(at.slices + at.q) * H + at.j] = az;
            if (!RB) {
                res_red[(2u * at.slices + at.q) * H + at.j] = an;
            }
        }
        workgroupBarrier();
        if (at.q == 0u) {
            var sr = 0.0;
            var sz = 0.0;
            var sn = 0.0;
            for (var p = 0u; p < at.slices; p = p + 1u) {
                sr = sr + res_red[p * H + at.j];
                sz = sz + res_red[(at.slices + p) * H + at.j];
                if (!RB) {
                    sn = sn + res_red[(2u * at.slices + p) * H + at.j];
                }
            }
            if (RB) {
                // The first half of a reset-before step (as `rb_rz`): r and
                // z, r * h into res_rh (and the scratch).
                res_rh[at.j] = rb_half(at.d, t, at.b, at.j, sr + bh.x, sz + bh.y, res_h[at.j]);
            } else {
                res_h[at.j] = gate_step(at.d, s, t, at.b, at.j, sr + bh.x, sz + bh.y, sn + bh.z);
            }
        }
        if (RB) {
            // The second half (as `step` with RB): gh_n = W_hn (r * h) and
            // the gates.
            workgroupBarrier();
            var pn = 0.0;
            for (var kk = 0u; kk < RES_KMAX; kk = kk + 1u) { // unroll
                if (kk < RES_L && kk < kl) {
                    pn = fma(res_rh[at.k0 + kk], rw[2u * RES_KMAX + kk], pn);
                }
            }
            if (at.q < at.slices) {
                res_red[(2u * at.slices + at.q) * H + at.j] = pn;
            }
            workgroupBarrier();
            if (at.q == 0u) {
                var sn = 0.0;
                for (var p = 0u; p < at.slices; p = p + 1u) {
                    sn = sn + res_red[(2u * at.slices + p) * H + at.j];
                }
                res_h[at.j] = gate_step(at.d, s, t, at.b, at.j, 0.0, 0.0, sn + bh.z);
            }
        }
        workgroupBarrier();
    }
}
