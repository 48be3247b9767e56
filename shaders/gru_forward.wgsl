// gru_forward.wgsl: the fused forward step of a GRU layer, both directions.
//
// For time step s of the processing order (t = s forwards, t = T-1-s for the
// reverse direction d = 1), with gi = X·W_ihᵀ + b_ih precomputed for all steps
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

override PRECOMPUTED: bool = false;
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

// The parameters: StepParams of common.wgsl.
@group(0) @binding(0) var<uniform> P: StepParams;
@group(0) @binding(1) var<storage, read> gi: array<f32>;
@group(0) @binding(2) var<storage, read> w_hhT: array<f32>;
@group(0) @binding(3) var<storage, read> b_hh: array<f32>;
@group(0) @binding(4) var<storage, read_write> hs: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> gates: array<f32>;
@group(0) @binding(7) var<storage, read_write> hwin: array<f32>;

// The gate math of unit j, batch row b, direction d at step s (time t), from
// gh = h·W_hhᵀ + b_hh of that unit: writes h', the output and the tape, and
// returns h'. Shared by `step` and `sequence`.
fn gate_step(d: u32, s: u32, t: u32, b: u32, j: u32, ghr: f32, ghz: f32, ghn: f32) -> f32 {
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let h3 = 3u * H;
    let g = (t * B + b) * (P.dirs * h3) + d * h3;
    let r = sigmoid_stable(gi[g + j] + ghr);
    let z = sigmoid_stable(gi[g + H + j] + ghz);
    let n = tanh_stable(gi[g + 2u * H + j] + r * ghn);
    let hp = hs[hs_slot(d, s) + b * H + j];
    let hn = (1.0 - z) * n + z * hp;
    hs[hs_slot(d, s + 1u) + b * H + j] = hn;
    out[(t * B + b) * (P.dirs * H) + d * H + j] = hn;
    if (TAPE) {
        let tp = ((d * T + s) * B + b) * 4u * H + j;
        gates[tp] = r;
        gates[tp + H] = z;
        gates[tp + 2u * H] = n;
        gates[tp + 3u * H] = ghn;
    }
    return hn;
}

@compute @workgroup_size(64, 1, 1)
fn step(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let gid = grid_id(wid_in, P.gx, P.gy, P.gz) * vec3<u32>(64u, 1u, 1u) + lid;
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let j = gid.x;
    let d = gid.z;
    let b0 = gid.y * 4u;
    if (j >= H || b0 >= B) {
        return;
    }
    let s = u32(P.s);
    let t = select(T - 1u - s, s, d == 0u);
    let h3 = 3u * H;
    let hprev = hs_slot(d, s);
    let wb = d * H * h3;
    // Rows past the batch are clamped for the loads and skipped for the stores.
    let bl = B - 1u;
    let o0 = hprev + min(b0, bl) * H;
    let o1 = hprev + min(b0 + 1u, bl) * H;
    let o2 = hprev + min(b0 + 2u, bl) * H;
    let o3 = hprev + min(b0 + 3u, bl) * H;

    var ar = vec4<f32>(0.0);
    var az = vec4<f32>(0.0);
    var an = vec4<f32>(0.0);
    let kmax = select(H, 0u, PRECOMPUTED);
    for (var k = 0u; k < kmax; k = k + 1u) {
        let w = wb + k * h3 + j;
        let wr = w_hhT[w];
        let wz = w_hhT[w + H];
        let wn = w_hhT[w + 2u * H];
        let hv = vec4<f32>(hs[o0 + k], hs[o1 + k], hs[o2 + k], hs[o3 + k]);
        ar = fma(hv, vec4<f32>(wr), ar);
        az = fma(hv, vec4<f32>(wz), az);
        an = fma(hv, vec4<f32>(wn), an);
    }
    var br = 0.0;
    var bz = 0.0;
    var bn = 0.0;
    if (P.has_bias != 0u && !PRECOMPUTED) {
        br = b_hh[d * h3 + j];
        bz = b_hh[d * h3 + H + j];
        bn = b_hh[d * h3 + 2u * H + j];
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let b = b0 + i;
        if (b >= B) {
            break;
        }
        var ghr = ar[i] + br;
        var ghz = az[i] + bz;
        var ghn = an[i] + bn;
        if (PRECOMPUTED) {
            let o = (d * B + b) * h3 + j;
            ghr = w_hhT[o];
            ghz = w_hhT[o + H];
            ghn = w_hhT[o + 2u * H];
        }
        let hn = gate_step(d, s, t, b, j, ghr, ghz, ghn);
        if (PRECOMPUTED) {
            let region = (((s + 1u) % 2u) * P.dirs + d) * P.win_len;
            hwin[region + ((j / P.kc) * B + b) * P.kc + j % P.kc] = hn;
        }
    }
}

// ---------------------------------------------------------------------------
// sequence: all T steps of one layer in one dispatch (the persistent kernel).
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
// h', the output and the tape as `step` does, then, after a barrier, refreshes
// h_sh from what the thread itself wrote.

const SEQ_ROWS: u32 = 4u;
const SEQ_HMAX: u32 = 256u;
override W_PRIVATE: bool = false;

var<workgroup> h_sh: array<f32, 1024>;
var<private> wp: array<f32, 768>;

@compute @workgroup_size(64, 1, 1)
fn sequence(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let H = P.hidden;
    let B = P.batch;
    let T = P.t_len;
    let d = wid.y;
    let rows = P.rows;
    let b0 = wid.x * rows;
    let nrows = min(rows, B - b0);
    let h3 = 3u * H;
    let units = (H + 63u) / 64u;
    let wb = d * H * h3;
    // Rows past the slice read row b0 (their results are dropped).
    let r1 = select(0u, 1u, nrows > 1u);
    let r2 = select(0u, 2u, nrows > 2u);
    let r3 = select(0u, 3u, nrows > 3u);

    for (var u = 0u; u < units; u = u + 1u) {
        let j = lid.x + 64u * u;
        if (j < H) {
            for (var r = 0u; r < SEQ_ROWS; r = r + 1u) {
                let b = b0 + min(r, nrows - 1u);
                h_sh[r * SEQ_HMAX + j] = hs[hs_slot(d, 0u) + b * H + j];
            }
            if (W_PRIVATE) {
                for (var k = 0u; k < H; k = k + 1u) {
                    let w = wb + k * h3 + j;
                    let o = (u * 3u) * H + k;
                    wp[o] = w_hhT[w];
                    wp[o + H] = w_hhT[w + H];
                    wp[o + 2u * H] = w_hhT[w + 2u * H];
                }
            }
        }
    }
    workgroupBarrier();

    for (var s = 0u; s < T; s = s + 1u) {
        let t = select(T - 1u - s, s, d == 0u);
        let hnext = hs_slot(d, s + 1u);
        for (var u = 0u; u < units; u = u + 1u) {
            let j = lid.x + 64u * u;
            if (j < H) {
                var ar = vec4<f32>(0.0);
                var az = vec4<f32>(0.0);
                var an = vec4<f32>(0.0);
                for (var k = 0u; k < H; k = k + 1u) {
                    let hv = vec4<f32>(h_sh[k], h_sh[r1 * SEQ_HMAX + k], h_sh[r2 * SEQ_HMAX + k], h_sh[r3 * SEQ_HMAX + k]);
                    var wr: f32;
                    var wz: f32;
                    var wn: f32;
                    if (W_PRIVATE) {
                        let o = (u * 3u) * H + k;
                        wr = wp[o];
                        wz = wp[o + H];
                        wn = wp[o + 2u * H];
                    } else {
                        let w = wb + k * h3 + j;
                        wr = w_hhT[w];
                        wz = w_hhT[w + H];
                        wn = w_hhT[w + 2u * H];
                    }
                    ar = fma(hv, vec4<f32>(wr), ar);
                    az = fma(hv, vec4<f32>(wz), az);
                    an = fma(hv, vec4<f32>(wn), an);
                }
                var br = 0.0;
                var bz = 0.0;
                var bn = 0.0;
                if (P.has_bias != 0u) {
                    br = b_hh[d * h3 + j];
                    bz = b_hh[d * h3 + H + j];
                    bn = b_hh[d * h3 + 2u * H + j];
                }
                for (var i = 0u; i < nrows; i = i + 1u) {
                    gate_step(d, s, t, b0 + i, j, ar[i] + br, az[i] + bz, an[i] + bn);
                }
            }
        }
        workgroupBarrier();
        for (var u = 0u; u < units; u = u + 1u) {
            let j = lid.x + 64u * u;
            if (j < H) {
                for (var i = 0u; i < nrows; i = i + 1u) {
                    h_sh[i * SEQ_HMAX + j] = hs[hnext + (b0 + i) * H + j];
                }
            }
        }
        workgroupBarrier();
    }
}
