//! Matrix products on storage buffers (`shaders/gemm.wgsl`): `C = op(A)
//! op(B) (+ bias)`, batched, long K ranges split into chunks whose partials
//! are summed by [`reduce`](super::reduce).

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::ops::params_struct;
use crate::gpu::ops::reduce::{encode_sum_rows, RowSum};
use crate::gpu::pipeline::{bindings, grid3, types, u32_of, Binding, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/gemm.wgsl");
/// The subgroup kernel, in a file of its own: a module that uses subgroup
/// operations does not validate on a device without them.
pub(crate) const SUBGROUP_SOURCE: &str = include_str!("../../../shaders/gemm_subgroup.wgsl");

params_struct! {
    /// `Params` of `gemm.wgsl`.
    GemmParams {
        m: u32,
        n: u32,
        k: u32,
        k_chunk: u32,
        lda: u32,
        ldb: u32,
        ldc: u32,
        n_split: u32,
        a_off: u32,
        b_off: u32,
        c_off: u32,
        bias_off: u32,
        a_batch: u32,
        b_batch: u32,
        c_batch: u32,
        c_split: u32,
        flags: u32,
        gx: u32,
        gy: u32,
        gz: u32,
    }
}
grid3!(GemmParams);

const BINDINGS: &[(u32, Binding)] = bindings![Read, Read, Read, ReadWrite];
/// The tiled kernels' bindings: those of [`BINDINGS`], then A and B again as
/// arrays of vec4s (`a4`, `b4`), which the `VEC4` kernels read.
const BINDINGS_TILED: &[(u32, Binding)] = bindings![Read, Read, Read, ReadWrite, Read, Read];

const fn spec(entry: &'static str, constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec::new::<GemmParams>(("gemm.wgsl", SOURCE), entry, BINDINGS).with(constants)
}

const GEMM_NN: KernelSpec = spec("main", &[("TRANS_A", 0.0), ("TRANS_B", 0.0)]);
const GEMM_NT: KernelSpec = spec("main", &[("TRANS_A", 0.0), ("TRANS_B", 1.0)]);
const GEMM_TN: KernelSpec = spec("main", &[("TRANS_A", 1.0), ("TRANS_B", 0.0)]);

const fn tiled_spec(constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec::new::<GemmParams>(("gemm.wgsl", SOURCE), "tiled", BINDINGS_TILED).with(constants)
}

/// The `tiled` kernels of one block tile (BM = BN = `$b`, BK = `$k`): NN,
/// NT, TN, then NN and TN with `VEC4` (see [`Gemm::vec4`]).
macro_rules! tiled {
    ($b:literal, $k:literal) => {
        [
            tiled!(@ $b, $k, 0.0, 0.0),
            tiled!(@ $b, $k, 0.0, 1.0),
            tiled!(@ $b, $k, 1.0, 0.0),
            tiled!(@ $b, $k, 0.0, 0.0, ("VEC4", 1.0)),
            tiled!(@ $b, $k, 1.0, 0.0, ("VEC4", 1.0)),
        ]
    };
    // One kernel: TRANS_A = `$ta`, TRANS_B = `$tb`, and `$extra`.
    (@ $b:literal, $k:literal, $ta:literal, $tb:literal $(, $extra:expr)?) => {
        tiled_spec(&[
            ("TRANS_A", $ta),
            ("TRANS_B", $tb),
            ("BM", $b),
            ("BN", $b),
            ("BK", $k),
            $($extra)?
        ])
    };
}

const TILE64_K8: [KernelSpec; 5] = tiled!(64.0, 8.0);
const TILE64_K16: [KernelSpec; 5] = tiled!(64.0, 16.0);
const TILE128_K8: [KernelSpec; 5] = tiled!(128.0, 8.0);
const TILE128_K16: [KernelSpec; 5] = tiled!(128.0, 16.0);

/// `gemm_subgroup.wgsl`'s `shared_a` (BM = BN = 128, BK = 16): NN, NT, TN,
/// then NN and TN with `VEC4`.
const fn sub_spec(constants: &'static [(&'static str, f64)]) -> KernelSpec {
    let file = ("gemm_subgroup.wgsl", SUBGROUP_SOURCE);
    KernelSpec::new::<GemmParams>(file, "shared_a", BINDINGS_TILED).with(constants)
}

/// With groups of G = `$g` lanes (8: subgroups of at least 8 lanes; 4 on
/// adapters whose subgroups may have 4).
macro_rules! subgroup {
    ($g:literal) => {
        [
            sub_spec(&[("TRANS_A", 0.0), ("TRANS_B", 0.0), ("G", $g)]),
            sub_spec(&[("TRANS_A", 0.0), ("TRANS_B", 1.0), ("G", $g)]),
            sub_spec(&[("TRANS_A", 1.0), ("TRANS_B", 0.0), ("G", $g)]),
            sub_spec(&[("TRANS_A", 0.0), ("TRANS_B", 0.0), ("G", $g), ("VEC4", 1.0)]),
            sub_spec(&[("TRANS_A", 1.0), ("TRANS_B", 0.0), ("G", $g), ("VEC4", 1.0)]),
        ]
    };
}

const SUBGROUP128_K16: [KernelSpec; 5] = subgroup!(8.0);
const SUBGROUP128_K16_G4: [KernelSpec; 5] = subgroup!(4.0);

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
#[rustfmt::skip]
pub(crate) const SPECS: &[KernelSpec] = &[
    GEMM_NN, GEMM_NT, GEMM_TN,
    TILE64_K8[0], TILE64_K8[1], TILE64_K8[2], TILE64_K8[3], TILE64_K8[4],
    TILE64_K16[0], TILE64_K16[1], TILE64_K16[2], TILE64_K16[3], TILE64_K16[4],
    TILE128_K8[0], TILE128_K8[1], TILE128_K8[2], TILE128_K8[3], TILE128_K8[4],
    TILE128_K16[0], TILE128_K16[1], TILE128_K16[2], TILE128_K16[3], TILE128_K16[4],
    SUBGROUP128_K16[0], SUBGROUP128_K16[1], SUBGROUP128_K16[2], SUBGROUP128_K16[3], SUBGROUP128_K16[4],
    SUBGROUP128_K16_G4[0], SUBGROUP128_K16_G4[1], SUBGROUP128_K16_G4[2], SUBGROUP128_K16_G4[3], SUBGROUP128_K16_G4[4],
];

/// A kernel of `gemm.wgsl`: each computes every product of the family
/// (transposes, batching, split-K, bias), summing each output's products in
/// increasing k from 0 (then the bias), so any of them may run any product.
/// Names are stable: they appear in plan names (`gru-wgpu tune`, `bench
/// --plan`), plan caches and `gru-wgpu bench-gemm --kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GemmVariant {
    /// The first design: a 4 x 8 register tile per thread, operands read
    /// straight from storage buffers, 8 x 8 threads (`main`).
    Simple,
    /// `tiled`, 64 x 64 blocks, K steps of 8: 4 x 4 per thread, 4 KiB of
    /// workgroup memory.
    #[serde(rename = "tile64-k8")]
    Tile64K8,
    /// `tiled`, 64 x 64 blocks, K steps of 16: 4 x 4 per thread, 8 KiB.
    #[serde(rename = "tile64-k16")]
    Tile64K16,
    /// `tiled`, 128 x 128 blocks, K steps of 8: 8 x 8 per thread, 8 KiB.
    #[serde(rename = "tile128-k8")]
    Tile128K8,
    /// `tiled`, 128 x 128 blocks, K steps of 16: 8 x 8 per thread, 16 KiB
    /// (WebGPU's default limit exactly).
    #[serde(rename = "tile128-k16")]
    Tile128K16,
    /// `gemm_subgroup.wgsl`, 128 x 128 blocks, K steps of 16, 8 x 8 per
    /// thread: B staged in workgroup memory (8 KiB), A's fragments shared
    /// between the lanes of a subgroup by shuffles. Needs
    /// `wgpu::Features::SUBGROUP`.
    #[serde(rename = "subgroup128-k16")]
    Subgroup128K16,
}

impl GemmVariant {
    /// Every variant, the baseline first.
    pub const ALL: &'static [GemmVariant] = &[
        GemmVariant::Simple,
        GemmVariant::Tile64K8,
        GemmVariant::Tile64K16,
        GemmVariant::Tile128K8,
        GemmVariant::Tile128K16,
        GemmVariant::Subgroup128K16,
    ];

    /// The variant's stable name (no spaces, no `/`; its `Display`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            GemmVariant::Simple => "simple",
            GemmVariant::Tile64K8 => "tile64-k8",
            GemmVariant::Tile64K16 => "tile64-k16",
            GemmVariant::Tile128K8 => "tile128-k8",
            GemmVariant::Tile128K16 => "tile128-k16",
            GemmVariant::Subgroup128K16 => "subgroup128-k16",
        }
    }

    test_hook! {
        /// The variant of this name.
        pub fn from_name(name: &str) -> Option<Self> {
            Self::ALL.iter().copied().find(|v| v.name() == name)
        }
    }

    /// `(block rows, block columns, K step)` of a `tiled` variant.
    fn tile(self) -> Option<(usize, usize, usize)> {
        match self {
            GemmVariant::Simple => None,
            GemmVariant::Tile64K8 => Some((64, 64, 8)),
            GemmVariant::Tile64K16 => Some((64, 64, 16)),
            GemmVariant::Tile128K8 => Some((128, 128, 8)),
            GemmVariant::Tile128K16 | GemmVariant::Subgroup128K16 => Some((128, 128, 16)),
        }
    }

    test_hook! {
        /// Bytes of workgroup memory a workgroup uses.
        pub fn workgroup_bytes(self) -> u32 {
            match (self, self.tile()) {
                (_, None) => 0,
                // Bs and a counter.
                (GemmVariant::Subgroup128K16, Some((_, bn, bk))) => (4 * bk * bn + 4) as u32,
                (_, Some((bm, bn, bk))) => (4 * bk * (bm + bn)) as u32,
            }
        }
    }

    /// Whether the variant needs subgroup operations.
    fn subgroups(self) -> bool {
        self == GemmVariant::Subgroup128K16
    }

    test_hook! {
        /// Whether the variant runs on a device with these limits and features,
        /// and why not where it does not.
        pub fn check(
            self,
            limits: &wgpu::Limits,
            features: wgpu::Features,
        ) -> std::result::Result<(), String> {
            let Some(_) = self.tile() else {
                return Ok(());
            };
            if self.subgroups() && !features.contains(wgpu::Features::SUBGROUP) {
                return Err(format!(
                    "GEMM variant `{}`: the device lacks subgroup operations (wgpu::Features::SUBGROUP)",
                    self.name()
                ));
            }
            // `tiled`: 16 x 16 threads; `shared_a`: 256 x 1.
            let (x, y) = if self.subgroups() { (256, 1) } else { (16, 16) };
            let need = [
                (
                    "max_compute_invocations_per_workgroup",
                    limits.max_compute_invocations_per_workgroup,
                    256,
                ),
                (
                    "max_compute_workgroup_size_x",
                    limits.max_compute_workgroup_size_x,
                    x,
                ),
                (
                    "max_compute_workgroup_size_y",
                    limits.max_compute_workgroup_size_y,
                    y,
                ),
                (
                    "max_compute_workgroup_storage_size",
                    limits.max_compute_workgroup_storage_size,
                    self.workgroup_bytes(),
                ),
            ];
            let missing: Vec<String> = need
                .iter()
                .filter(|(_, has, min)| has < min)
                .map(|(name, has, min)| format!("{name}: has {has}, needs at least {min}"))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "GEMM variant `{}`: {}",
                    self.name(),
                    missing.join("; ")
                ))
            }
        }
    }

    /// The kernel for these transposes (and subgroups of at least
    /// `subgroup_min` lanes), and the rows and columns of C a workgroup
    /// computes.
    /// `vec4`: the product's operands allow [`Gemm::vec4`] (tiled variants
    /// only).
    fn kernel(
        self,
        trans_a: bool,
        trans_b: bool,
        subgroup_min: u32,
        vec4: bool,
    ) -> (&'static KernelSpec, usize, usize) {
        let i = match (trans_a, trans_b, vec4) {
            (false, false, false) => 0,
            (false, true, _) => 1,
            (true, false, false) => 2,
            (false, false, true) => 3,
            (true, false, true) => 4,
            (true, true, _) => unreachable!("no GRU product needs both operands transposed"),
        };
        let specs = match self {
            GemmVariant::Simple => {
                let spec = match i {
                    0 | 3 => &GEMM_NN,
                    1 => &GEMM_NT,
                    _ => &GEMM_TN,
                };
                return (spec, 32, 64);
            }
            GemmVariant::Tile64K8 => &TILE64_K8,
            GemmVariant::Tile64K16 => &TILE64_K16,
            GemmVariant::Tile128K8 => &TILE128_K8,
            GemmVariant::Tile128K16 => &TILE128_K16,
            GemmVariant::Subgroup128K16 if subgroup_min >= 8 => &SUBGROUP128_K16,
            GemmVariant::Subgroup128K16 => &SUBGROUP128_K16_G4,
        };
        let (bm, bn, _) = self.tile().expect("a tiled variant");
        (&specs[i], bm, bn)
    }
}

/// A matrix product `C = op(A) op(B) (+ bias)`; see `shaders/gemm.wgsl`.
/// Offsets and strides are in floats.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub bias_off: usize,
    pub batch: usize,
    pub a_batch: usize,
    pub b_batch: usize,
    pub c_batch: usize,
    /// A is stored as f16 (an f16 model's activations or weights); C is f32.
    pub a16: bool,
    /// B (and the bias) are stored as f16.
    pub b16: bool,
    /// Whether the cut along K may depend on M: where M is fixed by the
    /// model (the weight gradients, whose rows are those of a weight) or
    /// the product stands alone (`bench-gemm`). Elsewhere M counts rows of
    /// the data (T·B, the rows still running at a step), and a row's sums
    /// may not depend on how many rows there are (see [`k_split`]).
    pub fixed_rows: bool,
}

/// Rows of a split-K chunk.
const K_CHUNK: usize = 256;
/// Split-K partials are kept under this many floats.
const MAX_PARTIAL_FLOATS: usize = 1 << 24;
/// Workgroups (output tiles, all batches) that fill a large GPU: two per SM
/// of a 132-SM H100, about. A product of [`Gemm::fixed_rows`] with as many
/// tiles is not split along K (beyond the loop budget), and one with fewer
/// is split into no more chunks than it takes to reach them.
pub(crate) const FILL_TILES: usize = 256;

/// How a product is cut along K (see [`k_split`]).
enum KSplit {
    /// In `n_split` chunks of `k_chunk` rows (one chunk: no split).
    Chunks { k_chunk: usize, n_split: usize },
    /// The partials of all M rows would pass the bound: slices of this
    /// many rows of C, each split on its own.
    Rows(usize),
}

/// The cut of `g` along K for `variant` on `dev`. It depends on K, N and
/// the batch only, never on M: the same row of C sums in the same order
/// however many rows there are (a stream's chunks equal one call over the
/// whole sequence), but for a product of [`Gemm::fixed_rows`], which
/// splits only as far as its output tiles fall short of [`FILL_TILES`]
/// (the split-K partials are written and read again: at 4096³, 16 chunks
/// were 1 GB of them). Where the partials of all M rows would pass the
/// bound, the rows go in slices instead. A product with a bias splits only
/// where its K passes the loop budget; the first chunk adds the bias.
fn k_split(dev: &Device, variant: GemmVariant, g: &Gemm, bias: bool) -> Result<KSplit> {
    let batch = g.batch.max(1);
    // One invocation's K loop steps one row of K at a time (the simple
    // kernel) or BK rows (the tiled ones, whose inner loops the compilers
    // unroll): a chunk of K may be this long within the device's loop
    // budget (see `Device::loop_budget`; only llvmpipe's is short enough
    // to matter, about 16 thousand rows).
    let k_step = variant.tile().map_or(1, |(_, _, bk)| bk) as u64;
    let k_max = usize::try_from((dev.loop_budget() / 2).saturating_mul(k_step))
        .unwrap_or(usize::MAX)
        .max(K_CHUNK);
    let n_split = split_chunks(g, variant, bias, k_max);
    if n_split > 1 && n_split * g.m * g.n * batch > MAX_PARTIAL_FLOATS {
        let slice = (MAX_PARTIAL_FLOATS / (n_split * g.n * batch)).max(1);
        return Ok(KSplit::Rows(slice));
    }
    let mut k_chunk = g.k.div_ceil(n_split);
    if let Some((_, _, bk)) = variant.tile() {
        // Whole K steps in each chunk but the last.
        k_chunk = k_chunk.next_multiple_of(bk);
    }
    dev.check_loop(
        &format!("a matrix product's loop over {k_chunk} rows of K"),
        (k_chunk as u64).div_ceil(k_step) + 16,
    )?;
    let n_split = g.k.div_ceil(k_chunk);
    Ok(KSplit::Chunks { k_chunk, n_split })
}

/// How many chunks of K [`k_split`] cuts `g` into before it looks at the
/// partials' size: none (1) for a short K, or a bias without a K past the
/// loop budget (`k_max` rows a chunk); else chunks of `K_CHUNK` rows, at
/// most 64, and for a product of [`Gemm::fixed_rows`] no more than it takes
/// to reach [`FILL_TILES`] workgroups; at least as many as the loop budget
/// needs.
fn split_chunks(g: &Gemm, variant: GemmVariant, bias: bool, k_max: usize) -> usize {
    let batch = g.batch.max(1);
    if g.ldc != g.n || !(g.k > 2 * K_CHUNK && !bias || g.k > k_max) {
        return 1;
    }
    // The simple kernel's block is 32 x 64 (8 x 8 threads of 4 x 8).
    let (bm, bn) = variant.tile().map_or((32, 64), |(bm, bn, _)| (bm, bn));
    let tiles = g.m.div_ceil(bm) * g.n.div_ceil(bn) * batch;
    let fill = match g.fixed_rows {
        true => FILL_TILES.div_ceil(tiles.max(1)),
        false => usize::MAX,
    };
    g.k.div_ceil(if bias { k_max } else { K_CHUNK })
        .min(64)
        .min(fill)
        .max(g.k.div_ceil(k_max))
        .min((MAX_PARTIAL_FLOATS / (g.n * batch).max(1)).max(1))
}

impl Gemm {
    /// Whether the tiled kernels may read this product's operands that are
    /// stored along m or n (A stored (K, M): `trans_a`; B stored (K, N): not
    /// `trans_b`) as vec4s (`VEC4`): one 16-byte load (8 in f16) a thread
    /// where four scalar loads of one vec4 would touch four times the
    /// sectors (`tests/access_patterns.rs`). There must be such an operand,
    /// each laid out in aligned vec4s (offset, stride and batch stride
    /// multiples of 4), in a buffer of at least 16 bytes (`a_bytes`,
    /// `b_bytes`: one vec4, the least a binding of vec4s may hold). Loads of
    /// the same values: the results are bitwise those of the scalar loads.
    fn vec4(&self, a_bytes: u64, b_bytes: u64) -> bool {
        let batched = self.batch > 1;
        let aligned = |off: usize, ld: usize, batch_stride: usize, bytes: u64| {
            off.is_multiple_of(4)
                && ld.is_multiple_of(4)
                && (!batched || batch_stride.is_multiple_of(4))
                && bytes >= 16
        };
        let a_ok = !self.trans_a || aligned(self.a_off, self.lda, self.a_batch, a_bytes);
        let b_ok = self.trans_b || aligned(self.b_off, self.ldb, self.b_batch, b_bytes);
        (self.trans_a || !self.trans_b) && a_ok && b_ok
    }

    /// The kernel's parameters for `g` cut into `n_split` chunks of
    /// `k_chunk` rows of K.
    fn params(&self, k_chunk: usize, n_split: usize, bias: bool) -> Result<GemmParams> {
        Ok(GemmParams {
            m: u32_of("GEMM rows", self.m)?,
            n: u32_of("GEMM columns", self.n)?,
            k: u32_of("GEMM depth", self.k)?,
            k_chunk: k_chunk as u32,
            lda: u32_of("GEMM stride", self.lda)?,
            ldb: u32_of("GEMM stride", self.ldb)?,
            ldc: u32_of("GEMM stride", self.ldc)?,
            n_split: n_split as u32,
            a_off: u32_of("GEMM offset", self.a_off)?,
            b_off: u32_of("GEMM offset", self.b_off)?,
            c_off: u32_of("GEMM offset", self.c_off)?,
            bias_off: u32_of("GEMM offset", self.bias_off)?,
            a_batch: u32_of("GEMM stride", self.a_batch)?,
            b_batch: u32_of("GEMM stride", self.b_batch)?,
            c_batch: u32_of("GEMM stride", self.c_batch)?,
            c_split: 0,
            flags: bias as u32,
            ..Default::default()
        })
    }
}

/// Records `C = op(A) op(B) (+ bias)`. Long K ranges (the weight gradients,
/// summed over all T·B rows) are split into chunks whose partial products
/// are summed by `reduce.wgsl`: more parallel work, shorter f32 sums, and a
/// fixed summation order ([`k_split`]).
pub(crate) fn encode_gemm(
    rec: &mut Recorder,
    variant: GemmVariant,
    g: &Gemm,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
) -> Result<()> {
    let dev = rec.dev;
    variant
        .check(&dev.limits, dev.features)
        .map_err(crate::error::GruError::Gpu)?;
    let subgroup_min = if variant.subgroups() {
        // The smallest subgroup the adapter may run.
        dev.device.adapter_info().subgroup_min_size
    } else {
        0
    };
    let vec4 = variant.tile().is_some() && g.vec4(a.size(), b.size());
    let (spec, rows, cols) = variant.kernel(g.trans_a, g.trans_b, subgroup_min, vec4);
    let typed = spec.typed(types::gemm(g.a16, g.b16));
    let spec = &typed;
    let batch = g.batch.max(1);
    let (k_chunk, n_split) = match k_split(dev, variant, g, bias.is_some())? {
        KSplit::Chunks { k_chunk, n_split } => (k_chunk, n_split),
        KSplit::Rows(slice) => {
            let row_step = if g.trans_a { 1 } else { g.lda };
            for r0 in (0..g.m).step_by(slice) {
                let part = Gemm {
                    m: slice.min(g.m - r0),
                    a_off: g.a_off + r0 * row_step,
                    c_off: g.c_off + r0 * g.ldc,
                    ..*g
                };
                encode_gemm(rec, variant, &part, a, b, bias, c)?;
            }
            return Ok(());
        }
    };
    let wg = [
        u32_of("GEMM columns", g.n.div_ceil(cols))?,
        u32_of("GEMM rows", g.m.div_ceil(rows))?,
        u32_of("GEMM batch", batch * n_split)?,
    ];
    let mut p = g.params(k_chunk, n_split, bias.is_some())?;
    let bias_buf = bias.unwrap_or(&dev.dummy);
    // The vec4 views of A and B (tiled kernels; the 16-byte dummy where the
    // kernel does not read them).
    let (a4, b4) = if vec4 {
        (a, b)
    } else {
        (&dev.dummy, &dev.dummy)
    };
    let buffers = |c| {
        if variant.tile().is_some() {
            vec![a, b, bias_buf, c, a4, b4]
        } else {
            vec![a, b, bias_buf, c]
        }
    };
    if n_split == 1 {
        return rec.run(spec, &p, &buffers(c), wg);
    }
    // Partials laid out (batch, split, M, N): batch z of C is the column sum of
    // an (n_split, M·N) matrix.
    let part_len = batch * n_split * g.m * g.n;
    let part = rec.storage("split-K partial products", part_len)?;
    p.c_off = 0;
    p.c_split = (g.m * g.n) as u32;
    p.c_batch = (n_split * g.m * g.n) as u32;
    rec.run(spec, &p, &buffers(part.buffer()), wg)?;
    encode_sum_rows(
        rec,
        &RowSum {
            cols: g.m * g.n,
            rows: n_split,
            ld: g.m * g.n,
            in_off: 0,
            in_batch: n_split * g.m * g.n,
            out_off: g.c_off,
            out_batch: g.c_batch,
            batch,
        },
        part.buffer(),
        c,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(m: usize, n: usize, k: usize, fixed_rows: bool) -> Gemm {
        Gemm {
            m,
            n,
            k,
            lda: k,
            ldb: n,
            ldc: n,
            fixed_rows,
            ..Default::default()
        }
    }

    const NO_BUDGET: usize = usize::MAX;

    #[test]
    fn a_product_with_enough_tiles_is_not_split_where_its_rows_may_decide() {
        let big = GemmVariant::Tile128K16;
        // 4096³: 32 x 32 tiles of 128, enough to fill a GPU.
        assert_eq!(
            split_chunks(&product(4096, 4096, 4096, true), big, false, NO_BUDGET),
            1
        );
        // Where the rows are the data's, the cut may not look at them: 16.
        assert_eq!(
            split_chunks(&product(4096, 4096, 4096, false), big, false, NO_BUDGET),
            16
        );
        // dW_hh at B = 256, T = 64, H = 1024: 24 x 8 = 192 tiles, 2 chunks.
        let dw = product(3 * 1024, 1024, 64 * 256, true);
        assert_eq!(split_chunks(&dw, big, false, NO_BUDGET), 2);
        // A small weight (3H = 192, I = 64) over 16384 rows: 2 tiles, 64 chunks.
        let small = product(192, 64, 16384, true);
        assert_eq!(split_chunks(&small, big, false, NO_BUDGET), 64);
        // The loop budget still cuts a long K however many tiles there are.
        assert_eq!(
            split_chunks(&product(4096, 4096, 4096, true), big, false, 1024),
            4
        );
        // A short K and a bias within the budget never split.
        assert_eq!(
            split_chunks(&product(64, 64, 512, false), big, false, NO_BUDGET),
            1
        );
        assert_eq!(
            split_chunks(&product(64, 64, 4096, false), big, true, NO_BUDGET),
            1
        );
    }
}
