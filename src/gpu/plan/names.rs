//! The names of plans and their parts: `Display` and `FromStr` of
//! [`Plan`] (`family/strategy`), [`Family`], [`Strategy`], [`GemmVariant`],
//! [`TuneMode`] and [`LimitsProfile`]. Names are stable: they appear in plan
//! caches and on the command line.

use super::{Family, Plan, Strategy, TuneMode};
use crate::error::{GruError, Result};
use crate::gpu::context::LimitsProfile;
use crate::gpu::ops::gemm::GemmVariant;

display_by_name!(Plan, Family, Strategy, GemmVariant, TuneMode, LimitsProfile);

impl std::str::FromStr for Plan {
    type Err = GruError;
    fn from_str(name: &str) -> Result<Self> {
        Plan::from_name(name)
    }
}

impl std::str::FromStr for TuneMode {
    type Err = GruError;
    fn from_str(name: &str) -> Result<Self> {
        TuneMode::from_name(name)
    }
}

impl std::str::FromStr for GemmVariant {
    type Err = GruError;
    fn from_str(name: &str) -> Result<Self> {
        GemmVariant::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = GemmVariant::ALL.iter().map(|v| v.name()).collect();
            GruError::InvalidConfig(format!(
                "unknown GEMM variant `{name}`: use one of {}",
                names.join(", ")
            ))
        })
    }
}

impl std::str::FromStr for Family {
    type Err = GruError;
    /// `windows` or a GEMM variant's name.
    fn from_str(name: &str) -> Result<Self> {
        Family::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = GemmVariant::ALL
                .iter()
                .map(|v| v.name())
                .chain(["windows"])
                .collect();
            GruError::InvalidConfig(format!(
                "unknown product family `{name}`: use one of {}",
                names.join(", ")
            ))
        })
    }
}
