// head.wgsl: a linear regression head on a GRU's last hidden state, with the
// mean squared error, forward and backward (the training example's head).
//
//   y[b]  = sum_j h[b, j] w[j] + c                      w = p[0..H], c = p[H]
//   loss  = (1 / B) sum_b (y[b] - goal[b])^2          (summed in order of b)
//   dy[b] = 2 (y[b] - goal[b]) / B
//   dh[b, j] = dy[b] w[j]                               the gradient of h, for the GRU's backward
//   dp[j] = sum_b dy[b] h[b, j],   dp[H] = sum_b dy[b]  (summed in order of b)
//
// Buffers: h (B, H) read, p (H + 1) read, goal (B) read, y (B) rw, dy (B) rw,
// loss (1) rw, dh (B, H) rw, dp (H + 1) rw. `forward` has one thread per row
// b, `mse` one thread, `backward` one per element of dh, `param_grads` one
// per element of dp.

struct Params {
    batch: u32, hidden: u32, gx: u32, _p0: u32,
}

// A grid wider than the device allows comes in pieces; gx is this piece's offset.
fn index(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return grid_id(wid, P.gx, 0u, 0u).x * 64u + lid.x;
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> goal: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;
@group(0) @binding(7) var<storage, read_write> dh: array<f32>;
@group(0) @binding(8) var<storage, read_write> dp: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = index(wid, lid);
    if (b >= P.batch) {
        return;
    }
    let H = P.hidden;
    var acc = p[H];
    for (var j = 0u; j < H; j = j + 1u) {
        acc = acc + h[b * H + j] * p[j];
    }
    y[b] = acc;
    dy[b] = 2.0 * (acc - goal[b]) / f32(P.batch);
}

@compute @workgroup_size(1, 1, 1)
fn mse() {
    var acc = 0.0;
    for (var b = 0u; b < P.batch; b = b + 1u) {
        let d = y[b] - goal[b];
        acc = acc + d * d;
    }
    loss[0] = acc / f32(P.batch);
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = index(wid, lid);
    if (e >= P.batch * P.hidden) {
        return;
    }
    dh[e] = dy[e / P.hidden] * p[e % P.hidden];
}

@compute @workgroup_size(64, 1, 1)
fn param_grads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = index(wid, lid);
    let H = P.hidden;
    if (j > H) {
        return;
    }
    var acc = 0.0;
    for (var b = 0u; b < P.batch; b = b + 1u) {
        var v = 1.0;
        if (j < H) {
            v = h[b * H + j];
        }
        acc = acc + dy[b] * v;
    }
    dp[j] = acc;
}
