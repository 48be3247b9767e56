//! Plans: which kernels run a GRU of a given shape on this adapter, and the
//! cache of the plans chosen by measurement.
//!
//! A [`Plan`] is a product family (a kernel of `gemm.wgsl`, or the window
//! kernels of `windows.wgsl`) and a time loop ([`Strategy`]); its name is
//! `family/strategy`, such as `simple/sequence` or `windows/products`. The
//! GRU (`gpu::gru::tune`) times the candidate plans of a shape on the device
//! and keeps the fastest here: in memory, and written through to a JSON
//! file per adapter in the user's cache folder, so that the next process
//! starts without tuning.
//!
//! ```text
//! <cache dir>/gru-wgpu/<crate version>/<adapter fingerprint>.json
//!   { "adapter": "...", "entries": { "<shape key>": { "plan", "mode",
//!     "candidates_hash", "timings": [[name, ms], ...] } } }
//! ```
//!
//! The shape key holds the limits profile, the directions and layers, and
//! B, T, I, H each rounded up to a power of two: shapes of one bucket share
//! a plan. An entry whose candidate set differs from the one the build
//! would measure now (a kernel added or removed) is tuned again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{GruError, Result};
use crate::gpu::context::{GpuContext, Products};
use crate::gpu::device::AdapterSummary;
use crate::gpu::ops::gemm::GemmVariant;

mod names;
pub(crate) mod strategy;
pub(crate) use strategy::Strategy;

/// The plans of names, shorthands among them (the context's products
/// decide their family).
impl GpuContext {
    /// The plan of a name: a plan's own name (`family/strategy`, see
    /// [`Plan::from_name`](crate::gpu::plan::Plan::from_name)), or a
    /// shorthand for the time loop on the family of
    /// [`products`](Self::products) (the window family, else the simple
    /// GEMM): `persistent` is the `sequence` loop, `per-step` the `step`
    /// loop (`products` on the window family). For `GpuGru::set_plan`; the
    /// command line's `--recurrence`.
    pub fn plan_named(&self, name: &str) -> Result<Plan> {
        let family = match self.product_kernels() {
            Products::Windows => Family::Windows,
            Products::Storage => Family::Gemm(GemmVariant::Simple),
        };
        Ok(match name {
            "persistent" => Plan::new(family, Strategy::Sequence),
            "per-step" if family.is_windows() => Plan::new(family, Strategy::Products),
            "per-step" => Plan::new(family, Strategy::Step),
            name => Plan::from_name(name)?,
        })
    }
}

/// The kernels that compute a plan's matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// A kernel of `gemm.wgsl` on storage buffers.
    Gemm(GemmVariant),
    /// The uniform-buffer windows of `windows.wgsl` (CPU adapters; they need
    /// uniform offsets of at most 32 bytes).
    Windows,
}

impl Family {
    /// `windows`, or the GEMM variant's name (its `Display`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Gemm(v) => v.name(),
            Family::Windows => "windows",
        }
    }

    /// The family of this name (its `FromStr`).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        if name == "windows" {
            return Some(Family::Windows);
        }
        GemmVariant::from_name(name).map(Family::Gemm)
    }

    /// Whether the family's kernels run on a device with these limits and
    /// features, and why not where they do not (what
    /// [`GpuContext::families`] asks of each).
    pub fn check(
        self,
        limits: &wgpu::Limits,
        features: wgpu::Features,
    ) -> std::result::Result<(), String> {
        match self {
            Family::Gemm(v) => v.check(limits, features),
            Family::Windows => crate::gpu::context::limits::window_kernels_fit(limits),
        }
    }

    test_hook! {
        /// Whether this is the window family.
        pub fn is_windows(self) -> bool {
            self == Family::Windows
        }
    }
}

/// How a GRU's work runs on the device: the products' family and the time
/// loop. Forward and backward both follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    pub family: Family,
    pub strategy: Strategy,
}

impl Plan {
    test_hook! {
        pub fn new(family: Family, strategy: Strategy) -> Self {
            Plan { family, strategy }
        }
    }

    /// `family/strategy`: the name `gru-wgpu tune` prints and `bench --plan`
    /// takes (its `Display`).
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.family.name(), self.strategy.name())
    }

    /// The plan of a name `family/strategy`, or an error that lists the
    /// names (its `FromStr`: `"simple/step".parse::<Plan>()`).
    pub(crate) fn from_name(name: &str) -> Result<Self> {
        let parsed = name
            .split_once('/')
            .and_then(|(f, s)| Some(Plan::new(Family::from_name(f)?, Strategy::from_name(s)?)));
        parsed.ok_or_else(|| {
            let families: Vec<&str> = GemmVariant::ALL
                .iter()
                .map(|v| v.name())
                .chain(["windows"])
                .collect();
            let strategies: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            GruError::InvalidConfig(format!(
                "unknown plan `{name}`: a plan is FAMILY/STRATEGY with FAMILY one of {} \
                 and STRATEGY one of {}",
                families.join(", "),
                strategies.join(", ")
            ))
        })
    }
}

/// How much the crate measures before it picks a plan for a new shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TuneMode {
    /// No measurement and no cache: the fixed fallback rule.
    Off,
    /// Each candidate timed once (the GEMM kernels' ranking on at most 16
    /// steps of the shape, the final round on at most 256, its closest
    /// again), the winner cached.
    #[default]
    Quick,
    /// Each candidate timed three times on the whole shape, the winner cached.
    Full,
}

impl TuneMode {
    /// `off`, `quick` or `full` (its `Display`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TuneMode::Off => "off",
            TuneMode::Quick => "quick",
            TuneMode::Full => "full",
        }
    }

    /// The mode of a name, or an error naming the choices (its `FromStr`).
    pub(crate) fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(TuneMode::Off),
            "quick" => Ok(TuneMode::Quick),
            "full" => Ok(TuneMode::Full),
            other => Err(GruError::InvalidConfig(format!(
                "unknown tuning mode `{other}`: use off, quick or full"
            ))),
        }
    }

    /// The mode `GRU_WGPU_TUNE` asks for (quick where it is unset or empty).
    pub(crate) fn from_env() -> Result<Self> {
        match std::env::var("GRU_WGPU_TUNE") {
            // The message of `from_name`'s error, not its Display: that
            // would say "invalid configuration:" twice.
            Ok(v) if !v.trim().is_empty() => Self::from_name(&v).map_err(|e| match e {
                GruError::InvalidConfig(m) => {
                    GruError::InvalidConfig(format!("GRU_WGPU_TUNE: {m}"))
                }
                e => e,
            }),
            _ => Ok(TuneMode::Quick),
        }
    }
}

/// The plan cache of a context, as [`GpuContext::plan_cache`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanCacheStatus {
    /// The cache's file, where plans are kept on disk (`None`: in memory
    /// only).
    pub file: Option<PathBuf>,
    /// The last problem with the file (unreadable, corrupt, not writable),
    /// where there was one: the cache then works in memory.
    pub warning: Option<String>,
    /// Why the last write of the file failed, where it did (the plans
    /// measured since are kept in memory only, lost with the process);
    /// `None` once a write succeeds.
    pub write_error: Option<String>,
}

/// Where the plans chosen by measurement are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanCacheLocation {
    /// `GRU_WGPU_CACHE_DIR` where set, else the user's cache folder
    /// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on
    /// macOS, `%LOCALAPPDATA%` on Windows), then `gru-wgpu/<version>/`.
    #[default]
    Default,
    /// This folder (then `gru-wgpu/<version>/` in it).
    Dir(PathBuf),
    /// In memory only: nothing is read from or written to disk.
    MemoryOnly,
}

impl PlanCacheLocation {
    /// The base folder, where there is one, made absolute (a relative
    /// `GRU_WGPU_CACHE_DIR` or [`Dir`](Self::Dir) is taken from the current
    /// folder when the cache opens, so that a later change of folder does
    /// not move it); an error where a relative one cannot be.
    fn base(&self) -> std::result::Result<Option<PathBuf>, String> {
        let Some(base) = self.relative_base() else {
            return Ok(None);
        };
        std::path::absolute(&base).map(Some).map_err(|e| {
            format!(
                "the cache folder {} is relative and cannot be made absolute ({e}); \
                 the plans are kept in memory only",
                base.display()
            )
        })
    }

    /// The base folder as it was given.
    fn relative_base(&self) -> Option<PathBuf> {
        match self {
            PlanCacheLocation::MemoryOnly => None,
            PlanCacheLocation::Dir(d) => Some(d.clone()),
            PlanCacheLocation::Default => {
                let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
                if let Some(d) = env("GRU_WGPU_CACHE_DIR") {
                    return Some(PathBuf::from(d));
                }
                if cfg!(target_os = "windows") {
                    return env("LOCALAPPDATA").map(PathBuf::from);
                }
                if cfg!(target_os = "macos") {
                    return env("HOME").map(|h| PathBuf::from(h).join("Library/Caches"));
                }
                env("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
            }
        }
    }
}

/// The dimensions a plan is chosen for; shapes of one bucket share a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShapeKey {
    pub dirs: usize,
    pub layers: usize,
    pub batch: usize,
    pub seq: usize,
    pub input: usize,
    pub hidden: usize,
}

impl ShapeKey {
    /// The bucket of a shape: B, T, I, H each rounded up to a power of two.
    pub(crate) fn bucket(self) -> ShapeKey {
        let up = |v: usize| v.max(1).checked_next_power_of_two().unwrap_or(v);
        ShapeKey {
            batch: up(self.batch),
            seq: up(self.seq),
            input: up(self.input),
            hidden: up(self.hidden),
            ..self
        }
    }

    /// The cache key of the bucket, with the limits profile it was measured under.
    pub(crate) fn key(self, profile: &str) -> String {
        let b = self.bucket();
        format!(
            "{profile} D{} L{} B{} T{} I{} H{}",
            b.dirs, b.layers, b.batch, b.seq, b.input, b.hidden
        )
    }
}

/// One cached choice.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CachedPlan {
    /// The plan's name.
    pub(crate) plan: String,
    /// The mode it was measured in.
    pub(crate) mode: TuneMode,
    /// A hash of the names of the candidates measured: another set (a newer
    /// build) means the entry is measured again.
    pub(crate) candidates_hash: String,
    /// Every candidate's time in milliseconds (`None`: it failed, or its
    /// results disagreed with the reference plan's).
    #[serde(default)]
    pub(crate) timings: Vec<(String, Option<f64>)>,
    /// The largest `(T, B)` the plan's results were checked at against the
    /// reference plan's: a call beyond it in either is checked again before
    /// the plan runs it (`(0, 0)` in entries of older builds: checked on first use).
    #[serde(default)]
    pub(crate) checked: (usize, usize),
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CacheFile {
    adapter: String,
    entries: HashMap<String, CachedPlan>,
}

/// A hash of candidate names, stable across builds and platforms (FNV-1a).
pub(crate) fn names_hash<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for b in name.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The plans of one adapter: memory first, written through to a file.
#[derive(Debug)]
pub(crate) struct PlanCache {
    adapter: String,
    file: Option<PathBuf>,
    mem: Mutex<HashMap<String, CachedPlan>>,
    /// Why the file could not be read or written, where it could not (the
    /// cache then works in memory).
    warning: Mutex<Option<String>>,
    /// Why the last write of the file failed, where it did (cleared by the
    /// next write that succeeds).
    unwritten: Mutex<Option<String>>,
    /// Held while a shape is tuned, so that two threads do not tune it twice.
    pub(crate) tuning: Mutex<()>,
}

impl PlanCache {
    /// The cache of `adapter` at `location`, with the entries of its file.
    pub(crate) fn open(adapter: &AdapterSummary, location: &PlanCacheLocation) -> Self {
        let fingerprint = format!(
            "{} | {} | {}",
            adapter.name,
            adapter.backend_name(),
            adapter.driver
        );
        let (base, refused) = match location.base() {
            Ok(b) => (b, None),
            Err(why) => (None, Some(why)),
        };
        let file = base.map(|b| {
            let safe: String = adapter
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(40)
                .collect();
            b.join("gru-wgpu")
                .join(env!("CARGO_PKG_VERSION"))
                .join(format!(
                    "{safe}-{}.json",
                    names_hash([fingerprint.as_str()])
                ))
        });
        let cache = PlanCache {
            adapter: fingerprint,
            file,
            mem: Mutex::default(),
            warning: Mutex::default(),
            unwritten: Mutex::default(),
            tuning: Mutex::default(),
        };
        if let Some(why) = refused {
            cache.warn(why);
        }
        if let Some(f) = &cache.file {
            match read_file(f) {
                Ok(Some(cf)) if cf.adapter == cache.adapter => {
                    *cache.mem.lock().unwrap_or_else(|p| p.into_inner()) = cf.entries;
                }
                Ok(Some(_)) => cache.warn(format!(
                    "{}: written for another adapter; it will be replaced",
                    f.display()
                )),
                Ok(None) => {}
                Err(e) => cache.warn(format!(
                    "{}: {e}; it will be replaced by the plans measured now",
                    f.display()
                )),
            }
        }
        cache
    }

    fn warn(&self, w: String) {
        *self.warning.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
    }

    /// The file the plans are written to, where there is one.
    pub(crate) fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The last problem with the file, where there was one.
    pub(crate) fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the last write of the file failed, where it did: the plans
    /// measured since are in memory only.
    pub(crate) fn write_error(&self) -> Option<String> {
        self.unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The entry of `key`, where there is one.
    pub(crate) fn get(&self, key: &str) -> Option<CachedPlan> {
        self.mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Stores an entry, in memory and in the file (read again first, so that
    /// entries another process wrote meanwhile are kept). A file that cannot
    /// be written leaves the entry in memory and a warning.
    pub(crate) fn put(&self, key: &str, entry: CachedPlan) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        mem.insert(key.to_string(), entry);
        let Some(f) = &self.file else { return };
        let mut cf = match read_file(f) {
            Ok(Some(cf)) if cf.adapter == self.adapter => cf,
            _ => CacheFile {
                adapter: self.adapter.clone(),
                entries: HashMap::new(),
            },
        };
        for (k, v) in mem.iter() {
            cf.entries.insert(k.clone(), v.clone());
        }
        drop(mem);
        let written = write_file(f, &cf).map_err(|e| format!("{}: {e}", f.display()));
        if let Err(e) = &written {
            self.warn(format!("{e}; the plans are kept in memory only"));
        }
        *self.unwritten.lock().unwrap_or_else(|p| p.into_inner()) = written.err();
    }
}

/// The cache file's entries; `None` where there is no file. Only a regular
/// file of at most [`crate::files::PLAN_CACHE_MAX`] bytes is read: a FIFO
/// or a file of gigabytes is refused at once, unread (the caller warns and
/// works in memory).
fn read_file(f: &Path) -> std::result::Result<Option<CacheFile>, String> {
    match crate::files::read_capped(f, crate::files::PLAN_CACHE_MAX, "a plan cache") {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("not a plan cache ({e})")),
        Err(GruError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(GruError::Io { source, .. }) => Err(source.to_string()),
        Err(GruError::FileRefused { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// How many names [`write_file`] tries for its temporary file.
const TEMP_TRIES: u32 = 16;

/// Writes the file whole through a temporary file in the same folder and a
/// rename, so that a reader never sees half of it. The temporary file is
/// created new (`create_new`: an existing file or link of that name, even
/// one planted to point elsewhere, is never written through; the next name
/// is tried), and the rename replaces `f` itself, not what a link there
/// points at.
fn write_file(f: &Path, cf: &CacheFile) -> std::io::Result<()> {
    use std::io::Write;
    let dir = f.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = f.file_name().unwrap_or_default().to_string_lossy();
    let mut last = None;
    for n in 0..TEMP_TRIES {
        // `<file>.json.<pid>.tmp`, then `<file>.json.<pid>.<n>.tmp`.
        let tmp = match n {
            0 => dir.join(format!("{name}.{}.tmp", std::process::id())),
            n => dir.join(format!("{name}.{}.{n}.tmp", std::process::id())),
        };
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let bytes = serde_json::to_vec_pretty(cf).expect("serializes");
        return file
            .write_all(&bytes)
            .and_then(|_| file.sync_all())
            .and_then(|_| {
                drop(file);
                std::fs::rename(&tmp, f)
            })
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            });
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary file could be created")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in GemmVariant::ALL {
            for s in Strategy::ALL {
                let p = Plan::new(Family::Gemm(*v), *s);
                assert_eq!(Plan::from_name(&p.name()).unwrap(), p);
                assert!(!p.name().contains(' '));
            }
        }
        let w = Plan::from_name("windows/products").unwrap();
        assert_eq!(w, Plan::new(Family::Windows, Strategy::Products));
        let e = Plan::from_name("fast/step").unwrap_err().to_string();
        assert!(
            e.contains("unknown plan `fast/step`") && e.contains("windows"),
            "{e}"
        );
        assert!(Plan::from_name("simple").is_err());
    }

    #[test]
    fn buckets_round_up_to_powers_of_two() {
        let k = ShapeKey {
            dirs: 2,
            layers: 1,
            batch: 17,
            seq: 100,
            input: 64,
            hidden: 1,
        };
        assert_eq!(k.key("adapter"), "adapter D2 L1 B32 T128 I64 H1");
    }

    #[test]
    fn the_cache_writes_through_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("gru-wgpu-plan-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let adapter = AdapterSummary {
            name: "Test GPU".into(),
            backend: wgpu::Backend::Vulkan,
            device_type: wgpu::DeviceType::DiscreteGpu,
            driver: "1.0".into(),
        };
        let loc = PlanCacheLocation::Dir(dir.clone());
        let entry = CachedPlan {
            plan: "simple/step".into(),
            mode: TuneMode::Quick,
            candidates_hash: names_hash(["simple/step"]),
            timings: vec![("simple/step".into(), Some(1.5))],
            checked: (16, 2),
        };
        let c = PlanCache::open(&adapter, &loc);
        assert!(c.get("k").is_none());
        c.put("k", entry.clone());
        assert!(c.warning().is_none(), "{:?}", c.warning());
        assert!(c.file().unwrap().starts_with(&dir));
        // A second cache (a new process) reads it.
        let c2 = PlanCache::open(&adapter, &loc);
        assert_eq!(c2.get("k"), Some(entry.clone()));
        // Another adapter does not see it.
        let other = AdapterSummary {
            name: "Other GPU".into(),
            ..adapter.clone()
        };
        assert!(PlanCache::open(&other, &loc).get("k").is_none());
        // A corrupt file is a warning, and is replaced by the next write.
        std::fs::write(c.file().unwrap(), b"{ not json").unwrap();
        let c3 = PlanCache::open(&adapter, &loc);
        assert!(c3.get("k").is_none());
        assert!(
            c3.warning().unwrap().contains("not a plan cache"),
            "{:?}",
            c3.warning()
        );
        c3.put("k", entry.clone());
        assert_eq!(PlanCache::open(&adapter, &loc).get("k"), Some(entry));
        let _ = std::fs::remove_dir_all(&dir);
        // Memory only: no file.
        assert!(PlanCache::open(&adapter, &PlanCacheLocation::MemoryOnly)
            .file()
            .is_none());
    }
}
