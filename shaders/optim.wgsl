// optim.wgsl: optimiser steps with PyTorch's update rules, and gradient
// clipping by global norm, elementwise over one flat parameter tensor.
//
// Every update kernel has one thread per element e < count (a flat index as
// in util.wgsl: e = (wid.y * gtx + wid.x) * 64 + lid.x, wid = workgroup_id +
// (gx, gy, gz)). The scalars that depend on the step number (step_size,
// bc2_sqrt) are computed by the host in f64, as PyTorch computes them in Python.
//
// sgd (torch.optim.SGD):
//   g = grad + weight_decay * p
//   buf = g                                        on the first step (flags & 1)
//       = momentum * buf + (1 - dampening) * g     after                (momentum > 0)
//   g = g + momentum * buf  (nesterov, flags & 2)  or  g = buf          (momentum > 0)
//   p = p - lr * g
// adam (torch.optim.Adam; AdamW with flags & 4):
//   AdamW: p = p * (1 - lr * weight_decay)          Adam: g = grad + weight_decay * p
//   m = lerp(m, g, 1 - beta1)                       (m + (1 - beta1) (g - m), as torch)
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   with step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t)
// sumsq (clip_grad_norm_, first pass):
//   part[out_off + c] = sum over e in chunk c (256 elements) of grad[e]^2, in order
// clip_coef (second pass, one thread): with n_i = sqrt(norms_sq[i]) the norm of tensor i,
//   total = sqrt(sum_i n_i^2) (the norm of the norms, as torch), coef = min(max_norm / (total + 1e-6), 1)
//   norms_sq[count] = total, norms_sq[count + 1] = coef
// scale (third pass): grad[e] = grad[e] * norms_sq[coef_at]
//
// Buffers: param (count) rw, grad (count) rw, s1 (count) rw (momentum buffer or m),
// s2 (count) rw (v; for sumsq the partial sums, for clip_coef and scale the norms).

struct Params {
    count: u32, flags: u32, lr: f32, weight_decay: f32,
    momentum: f32, dampening: f32, beta1: f32, beta2: f32,
    eps: f32, step_size: f32, bc2_sqrt: f32, max_norm: f32,
    out_off: u32, coef_at: u32, gx: u32, gy: u32,
    gz: u32, gtx: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;

fn flat(wid_in: vec3<u32>, lid: vec3<u32>) -> u32 {
    return flat_id(grid_id(wid_in, P.gx, P.gy, P.gz), P.gtx, lid);
}

@compute @workgroup_size(64, 1, 1)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    let p = param[e];
    var g = grad[e];
    if (P.weight_decay != 0.0) {
        g = g + P.weight_decay * p;
    }
    if (P.momentum != 0.0) {
        var buf = g;
        if ((P.flags & 1u) == 0u) {
            buf = P.momentum * s1[e] + (1.0 - P.dampening) * g;
        }
        s1[e] = buf;
        if ((P.flags & 2u) != 0u) {
            g = g + P.momentum * buf;
        } else {
            g = buf;
        }
    }
    param[e] = p - P.lr * g;
}

@compute @workgroup_size(64, 1, 1)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    var p = param[e];
    var g = grad[e];
    if ((P.flags & 4u) != 0u) {
        p = p * (1.0 - P.lr * P.weight_decay);
    } else if (P.weight_decay != 0.0) {
        g = g + P.weight_decay * p;
    }
    let m = s1[e] + (1.0 - P.beta1) * (g - s1[e]);
    let v = P.beta2 * s2[e] + (1.0 - P.beta2) * g * g;
    s1[e] = m;
    s2[e] = v;
    param[e] = p - P.step_size * m / (sqrt(v) / P.bc2_sqrt + P.eps);
}

@compute @workgroup_size(64, 1, 1)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat(wid, lid);
    let start = c * 256u;
    if (start >= P.count) {
        return;
    }
    let end = min(P.count, start + 256u);
    var acc = 0.0;
    for (var e = start; e < end; e = e + 1u) {
        acc = acc + grad[e] * grad[e];
    }
    s2[P.out_off + c] = acc;
}

@compute @workgroup_size(1, 1, 1)
fn clip_coef() {
    var total = 0.0;
    for (var i = 0u; i < P.count; i = i + 1u) {
        let n = sqrt(s2[i]);
        total = total + n * n;
    }
    total = sqrt(total);
    s2[P.count] = total;
    // min(c, 1) that keeps a NaN (torch's clamp does).
    let c = P.max_norm / (total + 1e-6);
    s2[P.count + 1u] = select(c, 1.0, c > 1.0);
}

@compute @workgroup_size(64, 1, 1)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    grad[e] = grad[e] * s2[P.coef_at];
}
