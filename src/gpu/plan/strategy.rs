//! The time loop of a plan ([`Strategy`]): a name for one of the engine's
//! time loops (`ops::steps::LOOPS`), the description each is run from.

use crate::gpu::ops::steps::{TimeLoop, LOOPS};

/// How the time loop of a layer runs (forward and backward): one of the
/// engine's time loops, by name. Names are stable: they appear in plan
/// names and plan caches. [`Strategy::ALL`] lists every loop the engine
/// has, in the order of its descriptions; the constants name the ones it
/// has today, for code that picks one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Strategy {
    name: &'static str,
}

#[allow(non_upper_case_globals)]
impl Strategy {
    test_hook! {
        /// One dispatch per step; one thread computes one hidden unit of four
        /// batch rows, looping over all of K (`step` of the step shaders).
        pub const Step: Strategy = Strategy::of("step");
    }
    test_hook! {
        /// One dispatch for all T steps: a 64-thread workgroup owns four batch
        /// rows of one direction (`sequence`); H <= 256.
        pub const Sequence: Strategy = Strategy::of("sequence");
    }
    test_hook! {
        /// Per step, the recurrent product through the family's matrix-product
        /// kernel, then a step that applies the gates (`step` with `PRECOMPUTED`).
        pub const Products: Strategy = Strategy::of("products");
    }
    test_hook! {
        /// One dispatch per step; a 256-thread workgroup computes 8 hidden units
        /// of 4 batch rows, the product split along K over 32 slices and reduced
        /// in workgroup memory (`splitk`): many workgroups at small batches.
        pub const SplitK: Strategy = Strategy::of("splitk");
    }
    test_hook! {
        /// One dispatch for all T steps: a workgroup of 256 to 1024 threads owns
        /// one batch row of one direction and keeps `W_hh` in its threads'
        /// private memory (`resident`); H <= 113 at 1024 threads, 128 at
        /// 512, 85 at 256.
        pub const Resident: Strategy = Strategy::of("resident");
    }

    /// Every strategy, the fallback first: one per loop description.
    pub const ALL: &'static [Strategy] = &ALL_LOOPS;

    /// The strategy of the loop described under `name` (a constant: it
    /// fails to compile where no loop has that name).
    const fn of(name: &'static str) -> Strategy {
        let mut i = 0;
        while i < LOOPS.len() {
            if const_eq(LOOPS[i].name, name) {
                return Strategy {
                    name: LOOPS[i].name,
                };
            }
            i += 1;
        }
        panic!("no time loop of that name")
    }

    /// The strategy's stable name (no spaces, no `/`; its `Display`).
    pub(crate) fn name(self) -> &'static str {
        self.name
    }

    test_hook! {
        /// The strategy of this name.
        pub fn from_name(name: &str) -> Option<Self> {
            Self::ALL.iter().copied().find(|v| v.name() == name)
        }
    }

    /// The loop's description.
    pub(crate) fn time_loop(self) -> &'static TimeLoop {
        TimeLoop::named(self.name).expect("every strategy names a loop")
    }

    test_hook! {
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
            self.time_loop().check(hidden, limits)
        }
    }
}

/// One strategy per loop description, in their order.
const ALL_LOOPS: [Strategy; LOOPS.len()] = {
    let mut all = [Strategy { name: "" }; LOOPS.len()];
    let mut i = 0;
    while i < LOOPS.len() {
        all[i] = Strategy {
            name: LOOPS[i].name,
        };
        i += 1;
    }
    all
};

/// `a == b`, in a constant.
const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl serde::Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loop_is_a_strategy_in_its_order_and_names_round_trip() {
        let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["step", "sequence", "products", "splitk", "resident"],
            "the fallback first, then the descriptions' order"
        );
        for &s in Strategy::ALL {
            assert_eq!(Strategy::from_name(s.name()), Some(s));
            assert_eq!(s.time_loop().name, s.name());
        }
        assert_eq!(Strategy::from_name("nope"), None);
        assert_eq!(
            serde_json::to_string(&Strategy::SplitK).unwrap(),
            "\"splitk\""
        );
    }
}
