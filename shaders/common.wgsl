// common.wgsl: functions shared by every kernel; the host prepends this file
// to each shader before compiling it.
//
// Numerically stable activations: no input, however large, gives NaN or Inf
// (NaN in, NaN out, as in PyTorch).
//
//   sigmoid(x) = 1 / (1 + e^-x)            for x >= 0
//              = e^x / (1 + e^x)           for x <  0   (e^x underflows to 0, never overflows)
//   tanh(x)    = x * P(x^2)                for |x| < 0.55 (Taylor series to x^17; error < 5e-9)
//              = sign(x) (1 - e) / (1 + e) with e = e^(-2|x|) in (0, 1]  otherwise

fn sigmoid_stable(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_stable(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.55) {
        let x2 = x * x;
        var p = 5.90027440945585947e-04;
        p = fma(p, x2, -1.45583438705131833e-03);
        p = fma(p, x2, 3.59212803657248114e-03);
        p = fma(p, x2, -8.86323552990219733e-03);
        p = fma(p, x2, 2.18694885361552030e-02);
        p = fma(p, x2, -5.39682539682539708e-02);
        p = fma(p, x2, 1.33333333333333331e-01);
        p = fma(p, x2, -3.33333333333333315e-01);
        p = fma(p, x2, 1.0);
        return x * p;
    }
    let e = exp(-2.0 * a);
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}

// PCG's RXS-M-XS hash: the dropout mask (src/dropout.rs holds the same function).
fn pcg_hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// ---------------------------------------------------------------------------
// Grids in pieces. A grid larger than the device allows per dimension is
// dispatched in pieces (src/gpu/pipeline.rs `pieces`); each piece's
// parameters carry its offset (gx, gy, gz), which every entry point adds to
// its workgroup id first:
//
//   wid = workgroup_id + (gx, gy, gz)
//
// The 1-D kernels linearise the whole grid with its width gtx (in workgroups):
//
//   e = (wid.y * gtx + wid.x) * 64 + local_invocation_id.x

fn grid_id(wid_in: vec3<u32>, gx: u32, gy: u32, gz: u32) -> vec3<u32> {
    return wid_in + vec3<u32>(gx, gy, gz);
}

fn flat_id(wid: vec3<u32>, gtx: u32, lid: vec3<u32>) -> u32 {
    return (wid.y * gtx + wid.x) * 64u + lid.x;
}

// ---------------------------------------------------------------------------
// The parameters of the forward and backward steps (gru_forward.wgsl,
// gru_backward.wgsl), one definition for both (src/gpu/ops/common.rs
// mirrors it):
//
//   t_len, batch, hidden, dirs   T, B, H, D
//   s                            the step (processing order; -1 is the
//                                backward's last step, dL/dh0 only)
//   has_bias                     1 where the GRU has biases
//   kc, win_len                  the window path: the chunk width and the
//                                floats of one state region (PRECOMPUTED)
//   gx, gy, gz                   the offset of this piece of the grid
//   rows                         batch rows per workgroup of `sequence`
//   flags, flags_at              1 where the call has step flags, and the
//                                word of `hs` where they start (below)
//   phase                        the half of a two-dispatch reset-before step (`splitk`)
//   rev0                         1 where direction 0 runs in reverse time (a
//                                reverse layer: D = 1), see `reversed`
//   steps                        the persistent kernels (`sequence`, `resident`):
//                                how many steps this dispatch runs, from step s
//                                on (forward) or down from step s (backward).
//                                A long time loop runs in several dispatches
//                                (the host bounds the loop iterations of one
//                                invocation, see src/gpu/ops/common.rs), each
//                                taking up the state the one before stored.
//
// Step flags (variable lengths and episode resets). Where `flags` is 1, the
// T·B words of `hs` from `flags_at` on hold, as floats 0..7, the flags of
// step t of batch row b at flags_at + t·B + b (t in time order):
//   F_VALID      t < lengths[b]: the step runs. A step past a row's length
//                is padding: its output is 0 and the state passes through
//                unchanged (h' = h), so that the forward direction's last
//                state is that of the last valid step and the reverse
//                direction starts its row at length - 1 from h0; on the tape
//                it has z = 1 and no gate gradients.
//   F_FWD_ZERO   the forward direction's state is 0 before step t (a reset
//                at t).
//   F_REV_ZERO   the reverse direction's state is 0 before step t (a reset
//                at t + 1 < lengths[b]).
// The state a step writes into `hs` for the next step is 0 where the next
// step starts from zero (so the tape's h_prev is what the step used), while
// the output keeps h'; the backward cuts the gradient into h there.
// (F_VALID, F_FWD_ZERO, F_REV_ZERO: defined by the host before this file.)

// Whether direction d runs in reverse time (t = T-1-s at step s): the
// second direction of a bidirectional layer, or the only direction of a
// reverse layer (rev0 = 1: ONNX's direction = "reverse").
fn reversed(d: u32, rev0: u32) -> bool {
    return d == 1u || rev0 != 0u;
}

// Whether a direction that runs in reverse time (`rev`) or forward starts
// step t (flags f) from a zero state.
fn zero_before(rev: bool, f: u32) -> bool {
    return (f & select(F_FWD_ZERO, F_REV_ZERO, rev)) != 0u;
}

struct StepParams {
    t_len: u32, batch: u32, hidden: u32, dirs: u32,
    s: i32, has_bias: u32, kc: u32, win_len: u32,
    gx: u32, gy: u32, gz: u32, rows: u32,
    flags: u32, flags_at: u32, phase: u32, steps: u32,
    rev0: u32, pad1: u32, pad2: u32, pad3: u32,
}
