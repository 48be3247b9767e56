// reduce.wgsl: sums over rows (column sums), in a fixed order.
//
//   out[out_off + z*out_batch + c*out_ld + n] = sum over r in [c*chunk, min(rows, (c+1)*chunk))
//                                                of inp[in_off + z*in_batch + r*ld + n]
//
// for every column n < cols, chunk c (workgroup y) and batch z. With one chunk
// this is a plain column sum; with several it is the first of two passes, the
// second summing the chunks' partials (in chunks again where they are many,
// so that no thread sums more than 512 rows). The bias gradients are column sums of
// dG_i (T·B, D·3H) and dG_h (T·B, 3H) per direction, and the split-K partials
// of gemm.wgsl are summed here too. Each thread sums one column of one chunk,
// row by row: a fixed order, so the result is bitwise reproducible.

struct Params {
    cols: u32, rows: u32, ld: u32, chunk: u32,
    in_off: u32, in_batch: u32, out_off: u32, out_batch: u32,
    out_ld: u32, gx: u32, gy: u32, gz: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn sum_rows(@builtin(workgroup_id) wid_in: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wid = grid_id(wid_in, P.gx, P.gy, P.gz);
    let n = wid.x * 64u + lid.x;
    if (n >= P.cols) {
        return;
    }
    let c = wid.y;
    let z = wid.z;
    let r0 = c * P.chunk;
    let r1 = min(P.rows, r0 + P.chunk);
    var acc = 0.0;
    var i = P.in_off + z * P.in_batch + r0 * P.ld + n;
    for (var r = r0; r < r1; r = r + 1u) {
        acc = acc + inp[i];
        i = i + P.ld;
    }
    out[P.out_off + z * P.out_batch + c * P.out_ld + n] = acc;
}
