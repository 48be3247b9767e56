// util.wgsl: data movement around the GRU kernels.
//
// Every kernel here is elementwise over a flat index
//   e = (wid.y * gtx + wid.x) * 64 + local_invocation_id.x,   wid = workgroup_id + (gx, gy, gz)
// one element per thread, e < count, where gtx is the grid's width and (gx, gy,
// gz) the offset of this piece of the grid (a grid larger than the device
// allows per dimension comes in pieces). (a, b, c) are the dimensions of the
// input, outermost first: (A, B, C) for permute01, (Z, R, C) for transpose,
// (R, K) for chunk; kc is chunk's chunk width.
//
// Buffers: inp (binding 1) and out (binding 2) are arrays of SI and SO, each
// f32 or f16 (the storage of an f16 model): values are converted on the way
// (f16 -> f32 exactly, f32 -> f16 rounded to nearest).
//
// permute01  (A, B, C) -> (B, A, C):  out[out_off + (b*A + a)*C + c] = inp[in_off + (a*B + b)*C + c]
//            batch_first inputs to the sequence-first layout the kernels use, and back.
// transpose  (Z, R, C) -> (Z, C, R):  out[out_off + z*R*C + c*R + r] = inp[in_off + z*R*C + r*C + c]
//            W_hh (D, 3H, H) to W_hhᵀ (D, H, 3H) for the forward step.
// dropout    out[out_off + e] = inp[in_off + e] * (keep(seed, layer, e) ? scale : 0)
//            with keep(...) = pcg_hash(e ^ pcg_hash(layer ^ pcg_hash(seed))) >> 8 >= threshold,
//            the same function as src/dropout.rs, on the sequence-first (T, B, D·H) index e.
// add        out[out_off + e] = out[out_off + e] + inp[in_off + e]   (gradient accumulation)
// copy       out[out_off + e] = inp[in_off + e]   (converting between f32 and f16: copies
//            of f16 data at offsets that a buffer copy cannot take, the f16 weights from
//            the f32 masters)
// fill       out[out_off + e] = 0
// gather_rows (A, B, C) rows of B reordered: out[out_off + (a*B + i)*C + c] = inp[in_off + (a*B + idx[i])*C + c]
//            the batch sorted by length (longest first) and back (binding 3: idx, B u32 values).
// chunk      the logical (R, K) matrix M(r, k) = inp[in_off + z*in_batch + r*rs + k*ks] into the
//            chunked layout the window GEMM reads: ceil(K / Kc) chunks of (R, Kc), zero past K:
//            out[out_off + z*out_batch + (c*R + r)*Kc + kk] = M(r, c*Kc + kk)   (R = a, K = b, Kc = kc)
//            Strides express the transposes: the rows of dG_i (T·B, D·3H) as (D·3H, T·B) with
//            rs = 1, ks = D·3H, for instance.
// loop_probe one invocation runs a loop of `count` iterations, each adding 1 + inp[0] (the
//            host stores 0 there, so no compiler can fold the loop away), and writes how
//            many ran: out[0] = iterations (exact as a float up to 2^24). Fewer than
//            `count` where the driver ends long loops early (llvmpipe stops every loop of an
//            invocation once 65535 iterations have run, all its loops counted together):
//            the host then splits the kernels whose loops grow with the data.

struct Params {
    count: u32, in_off: u32, out_off: u32, a: u32,
    b: u32, c: u32, seed: u32, layer: u32,
    threshold: u32, scale: f32, rs: u32, ks: u32,
    in_batch: u32, out_batch: u32, gx: u32, gy: u32,
    gz: u32, gtx: u32, kc: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> inp: array<SI>;
@group(0) @binding(2) var<storage, read_write> out: array<SO>;
// gather_rows only.
@group(0) @binding(3) var<storage, read> idx: array<u32>;

fn group(wid_in: vec3<u32>) -> vec3<u32> {
    return grid_id(wid_in, P.gx, P.gy, P.gz);
}

fn flat(wid_in: vec3<u32>, lid: vec3<u32>) -> u32 {
    return flat_id(group(wid_in), P.gtx, lid);
}

@compute @workgroup_size(64, 1, 1)
fn permute01(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    // e indexes the output (B, A, C).
    let c = e % P.c;
    let ba = e / P.c;
    let a = ba % P.a;
    let b = ba / P.a;
    out[P.out_off + e] = SO(f32(inp[P.in_off + (a * P.b + b) * P.c + c]));
}

@compute @workgroup_size(64, 1, 1)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    // e indexes the output (Z, C, R) with R = P.b, C = P.c.
    let r = e % P.b;
    let zc = e / P.b;
    let c = zc % P.c;
    let z = zc / P.c;
    out[P.out_off + e] = SO(f32(inp[P.in_off + (z * P.b + r) * P.c + c]));
}

@compute @workgroup_size(64, 1, 1)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    let keep = (pcg_hash(e ^ pcg_hash(P.layer ^ pcg_hash(P.seed))) >> 8u) >= P.threshold;
    // x * 0 for a dropped element, so that a NaN stays NaN, as in PyTorch.
    out[P.out_off + e] = SO(f32(inp[P.in_off + e]) * select(0.0, P.scale, keep));
}

@compute @workgroup_size(64, 1, 1)
fn chunk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    let kc = P.kc;
    let kk = e % kc;
    let r = (e / kc) % P.a;
    let k = (e / (kc * P.a)) * kc + kk;
    var v = 0.0;
    if (k < P.b) {
        v = f32(inp[P.in_off + group(wid).z * P.in_batch + r * P.rs + k * P.ks]);
    }
    out[P.out_off + group(wid).z * P.out_batch + e] = SO(v);
}

@compute @workgroup_size(64, 1, 1)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    out[P.out_off + e] = SO(f32(out[P.out_off + e]) + f32(inp[P.in_off + e]));
}

@compute @workgroup_size(64, 1, 1)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    // e indexes the output (A, B, C).
    let c = e % P.c;
    let ab = e / P.c;
    let i = ab % P.b;
    let a = ab / P.b;
    out[P.out_off + e] = SO(f32(inp[P.in_off + (a * P.b + idx[i]) * P.c + c]));
}

@compute @workgroup_size(64, 1, 1)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    out[P.out_off + e] = SO(f32(inp[P.in_off + e]));
}

@compute @workgroup_size(64, 1, 1)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat(wid, lid);
    if (e >= P.count) {
        return;
    }
    out[P.out_off + e] = SO(0.0);
}

@compute @workgroup_size(1, 1, 1)
fn loop_probe() {
    var n = 0.0;
    for (var i = 0u; i < P.count; i = i + 1u) {
        n = n + 1.0 + f32(inp[0]);
    }
    out[0] = SO(n);
}
