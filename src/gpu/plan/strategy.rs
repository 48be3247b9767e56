//! The time loop of a plan ([`Strategy`]) and where each applies.

/// How the time loop of a layer runs (forward and backward). Names are
/// stable: they appear in plan names and plan caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Strategy {
    /// One dispatch per step; one thread computes one hidden unit of four
    /// batch rows, looping over all of K (`step` of the step shaders).
    Step,
    /// One dispatch for all T steps: a 64-thread workgroup owns four batch
    /// rows of one direction (`sequence`); H <= 256.
    Sequence,
    /// Per step, the recurrent product through the family's matrix-product
    /// kernel, then a step that applies the gates (`step` with `PRECOMPUTED`).
    Products,
    /// One dispatch per step; a 256-thread workgroup computes 4 hidden units
    /// of 4 batch rows, the product split along K over 64 slices and reduced
    /// in workgroup memory (`splitk`): many workgroups at small batches.
    SplitK,
    /// One dispatch for all T steps: a workgroup of 256 to 1024 threads owns
    /// one batch row of one direction and keeps `W_hh` in its threads'
    /// private memory (`resident`); H <= 85 at 256 threads, 128 at 512,
    /// 170 at 1024.
    Resident,
}

impl Strategy {
    /// Every strategy, the fallback first.
    pub const ALL: &'static [Strategy] = &[
        Strategy::Step,
        Strategy::Sequence,
        Strategy::Products,
        Strategy::SplitK,
        Strategy::Resident,
    ];

    /// The strategy's stable name (no spaces, no `/`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Step => "step",
            Strategy::Sequence => "sequence",
            Strategy::Products => "products",
            Strategy::SplitK => "splitk",
            Strategy::Resident => "resident",
        }
    }

    /// The strategy of this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// Whether the strategy runs a layer of hidden size `hidden` on a batch
    /// of `batch` rows on a device with these limits and features, and why
    /// not where it does not (`windows`: the products are the window
    /// family's).
    pub fn check(
        self,
        hidden: usize,
        batch: usize,
        limits: &wgpu::Limits,
        features: wgpu::Features,
        windows: bool,
    ) -> std::result::Result<(), String> {
        let _ = (batch, features, windows);
        match self {
            Strategy::Step | Strategy::Products => Ok(()),
            _ => crate::gpu::ops::steps::TimeLoop::named(self.name())
                .expect("every strategy but products is a fused loop")
                .check(hidden, limits),
        }
    }
}
