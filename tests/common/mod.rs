//! Helpers shared by the test suites.
#![allow(dead_code)]

pub mod check;

use std::path::PathBuf;

use ndarray::{Array, Dimension, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The PyTorch reference cases, copied byte for byte from `shared/golden`.
pub fn golden_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        8,
        "expected the 8 PyTorch reference cases in {}",
        dir.display()
    );
    files
}

/// An array of the given shape with elements drawn from U(-scale, scale).
pub fn random<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
    shape: Sh,
    scale: f64,
    rng: &mut ChaCha8Rng,
) -> Array<f64, D> {
    Array::from_shape_simple_fn(shape, || rng.random_range(-scale..scale))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

use gru_wgpu::gpu::{
    window_kernels_fit, ContextOptions, GpuContext, LimitsProfile, Plan, Products,
};
use std::sync::OnceLock;

/// Whether a missing adapter, or a path that should open and does not, is a
/// failure: `GRU_WGPU_REQUIRE_GPU` set to anything but empty or `0`.
pub fn require_gpu() -> bool {
    std::env::var("GRU_WGPU_REQUIRE_GPU").is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// The shared GPU context of a test binary (the adapter's limits, the
/// products the context chooses, buffers poisoned with NaN), or `None`
/// without an adapter. Under [`require_gpu`] a missing adapter fails the
/// test instead, with the true reason.
pub fn gpu() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match open(LimitsProfile::Adapter, None) {
        Ok(ctx) => {
            if let Some(want) = expected_adapter() {
                assert!(
                    ctx.adapter().name.contains(&want),
                    "the tests were to run on {want} and opened {}",
                    ctx.adapter()
                );
            }
            eprintln!(
                "GPU tests on {} ({:?} products)",
                ctx.adapter(),
                ctx.products()
            );
            Some(ctx)
        }
        Err(e) => {
            if require_gpu() {
                panic!("GRU_WGPU_REQUIRE_GPU is set but the GPU cannot be opened: {e}");
            }
            eprintln!(
                "skipping GPU tests: {e} (set GRU_WGPU_REQUIRE_GPU=1 to make this a failure)"
            );
            None
        }
    })
    .clone()
}

/// The shared contexts: poisoned buffers, and the fixed fallback rule for
/// calls without a forced plan (tuning is tested in `tests/planner.rs`; the
/// suites here force each plan), with nothing written to the user's cache.
fn open(profile: LimitsProfile, products: Option<Products>) -> gru_wgpu::Result<GpuContext> {
    GpuContext::with_options(ContextOptions {
        poison_buffers: true,
        products,
        profile,
        tune: Some(gru_wgpu::gpu::TuneMode::Off),
        plan_cache: gru_wgpu::gpu::PlanCacheLocation::MemoryOnly,
        ..Default::default()
    })
}

/// A context for each limit profile, with every product family the
/// adapter can run under it, each with a label: the adapter's own limits,
/// and WebGPU's default limits. A family the adapter cannot run under a
/// profile (the window kernels need uniform offsets of at most 32 bytes: not
/// under WebGPU's 256, nor on most GPUs) is reported with its reason; a
/// context that should open and does not fails under [`require_gpu`].
/// `None` without an adapter.
pub fn gpu_all() -> Option<Vec<(String, GpuContext)>> {
    static CTX: OnceLock<Option<Vec<(String, GpuContext)>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let base = gpu()?;
        let mut out = Vec::new();
        for profile in [LimitsProfile::Adapter, LimitsProfile::WebGpu] {
            let label = format!("{} limits", profile);
            if let Err(why) = window_kernels_fit(&profile.limits(base.limits())) {
                eprintln!("not run: {label}, windows family: {why}");
            }
            match open(profile, None) {
                Ok(ctx) => out.push((label, ctx)),
                Err(e) if require_gpu() => {
                    panic!(
                        "{label} should open on {} and does not: {e}",
                        base.adapter()
                    )
                }
                Err(e) => eprintln!("not run: {label}: {e}"),
            }
        }
        assert!(
            out.iter().any(|(l, _)| l.starts_with("adapter"))
                && out.iter().any(|(l, _)| l.starts_with("webgpu")),
            "the storage kernels run under both limit profiles on every adapter"
        );
        Some(out)
    })
    .clone()
}

/// Whether `products` can run on the shared context's adapter (with its own
/// limits); where not, prints why (a path not run, never a quiet pass).
pub fn can_run(products: Products) -> bool {
    let Some(base) = gpu() else { return false };
    if products == Products::Windows {
        if let Err(why) = window_kernels_fit(base.limits()) {
            eprintln!(
                "not run: {products:?} products on {}: {why}",
                base.adapter()
            );
            return false;
        }
    }
    true
}

/// Every limit profile with every plan of its coverage set (plans that
/// together run every kernel the tuner's candidates run: each GEMM variant,
/// each time loop, the window family where it runs), with a label; empty
/// without an adapter. A plan may not apply to a given shape: see
/// [`applies`].
pub fn gpu_paths() -> Vec<(String, GpuContext, Plan)> {
    static LISTED: OnceLock<()> = OnceLock::new();
    let Some(ctxs) = gpu_all() else {
        return vec![];
    };
    let mut out = Vec::new();
    for (label, ctx) in ctxs {
        for plan in check::coverage_plans(&ctx) {
            out.push((format!("{label}, {plan}"), ctx.clone(), plan));
        }
    }
    LISTED.get_or_init(|| {
        eprintln!(
            "GPU paths: {}",
            out.iter()
                .map(|(l, _, _)| l.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    out
}

/// Whether `plan` applies to `config` on a batch of `batch` rows on `ctx`
/// (and why not, printed, where it does not).
pub fn applies(
    ctx: &GpuContext,
    config: &GruConfig,
    batch: usize,
    plan: Plan,
    label: &str,
) -> bool {
    let params = gru_wgpu::GruParams::<f32>::zeros(config).unwrap();
    let m = gru_wgpu::gpu::GpuGru::new(ctx, &params).unwrap();
    match m.check_plan(plan, batch) {
        Ok(()) => true,
        Err(why) => {
            eprintln!("not run: {label}, B={batch} {config:?}: {why}");
            false
        }
    }
}

use check::RandomCase;
use gru_wgpu::GruConfig;

/// A random case, as `RandomCase::new`.
pub fn case(config: GruConfig, t: usize, b: usize, with_h0: bool, seed: u64) -> RandomCase {
    RandomCase::new(config, t, b, with_h0, seed).unwrap()
}

/// Every tensor of the GPU run against the f64 CPU reference, each within
/// `bound` (a NaN fails); returns the worst relative error.
pub fn check(ctx: &GpuContext, case: &RandomCase, train_seed: Option<u32>, bound: f64) -> f64 {
    check_with(ctx, case, train_seed, None, bound)
}

/// [`check`] with a plan forced (`None`: the automatic plan).
pub fn check_with(
    ctx: &GpuContext,
    case: &RandomCase,
    train_seed: Option<u32>,
    r: Option<Plan>,
    bound: f64,
) -> f64 {
    let errors = case.compare_plan(ctx, train_seed, r).unwrap();
    assert_eq!(errors.len(), 4 + case.config.param_specs().len());
    for e in &errors {
        assert!(
            e.rel <= bound,
            "{:?} {:?} {r:?} T={} B={} h0={}: {} relative error {:e} > {bound:e}",
            ctx.products(),
            case.config,
            case.seq_len,
            case.batch,
            case.h0.is_some(),
            e.name,
            e.rel
        );
    }
    check::worst(&errors)
}

/// The first `len` floats of a device buffer, read back. Waits until the map
/// callback has run: with tests sharing the device across threads, another
/// thread's poll may be running it when this thread's poll returns.
pub fn download(ctx: &GpuContext, buf: &wgpu::Buffer, len: usize) -> Vec<f32> {
    assert!(
        buf.size() >= (len * 4) as u64,
        "buffer of {} bytes, {len} floats expected",
        buf.size()
    );
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (len * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, (len * 4) as u64);
    ctx.queue().submit(Some(enc.finish()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        r.unwrap();
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        ctx.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        std::thread::yield_now();
    }
    let v =
        bytemuck::cast_slice::<u8, f32>(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    v
}

/// A GPU run's results, as `RandomCase::run_gpu` returns them.
pub type Run = (
    ndarray::Array3<f32>,
    ndarray::Array3<f32>,
    gru_wgpu::cpu::GruGrads<f32>,
);

/// The bit patterns of an array's elements.
pub fn bits(a: &ndarray::Array3<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// Two runs bitwise equal: output, h_n and every gradient.
pub fn assert_same(a: &Run, b: &Run, what: &str) {
    assert_eq!(bits(&a.0), bits(&b.0), "{what}: output");
    assert_eq!(bits(&a.1), bits(&b.1), "{what}: h_n");
    assert_eq!(bits(&a.2.x), bits(&b.2.x), "{what}: grad x");
    assert_eq!(bits(&a.2.h0), bits(&b.2.h0), "{what}: grad h0");
    for ((n, x), (_, y)) in a.2.params.named().into_iter().zip(b.2.params.named()) {
        let x: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let y: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        assert_eq!(x, y, "{what}: grad {}", n.name);
    }
}

/// The Vulkan driver file (ICD manifest) of SwiftShader, the second,
/// independent Vulkan implementation the GPU tests run on beside lavapipe:
/// `GRU_WGPU_SWIFTSHADER_ICD`, else the one Debian's `chromium` package
/// ships. `None` where neither is there.
pub fn swiftshader_icd() -> Option<PathBuf> {
    let path = std::env::var_os("GRU_WGPU_SWIFTSHADER_ICD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/chromium/vk_swiftshader_icd.json"));
    path.is_file().then_some(path)
}

/// The adapter name the tests of this process must run on, where a parent
/// process asked for one (`GRU_WGPU_EXPECT_ADAPTER`, set by
/// [`rerun_on_swiftshader`]).
pub fn expected_adapter() -> Option<String> {
    std::env::var("GRU_WGPU_EXPECT_ADAPTER")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Runs the tests `names` of this test binary again in a child process on
/// SwiftShader (the Vulkan loader sees only its driver there), and fails
/// where they fail. Where SwiftShader is missing, says so; under
/// [`require_gpu`] that is a failure (CI installs it: `.ci/run`). Inside
/// such a child it does nothing (the child runs the tests themselves).
pub fn rerun_on_swiftshader(names: &[&str]) {
    if expected_adapter().is_some() {
        return;
    }
    let Some(icd) = swiftshader_icd() else {
        let why = "SwiftShader's Vulkan driver is not installed \
                   (Debian: apt-get install chromium; or set GRU_WGPU_SWIFTSHADER_ICD \
                   to its vk_swiftshader_icd.json)";
        if require_gpu() {
            panic!("GRU_WGPU_REQUIRE_GPU is set but {why}");
        }
        eprintln!("not run on SwiftShader: {why}");
        return;
    };
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", "--nocapture", "--test-threads", "1"])
        .args(names)
        .env("VK_ICD_FILENAMES", &icd)
        .env("VK_DRIVER_FILES", &icd)
        .env("GRU_WGPU_EXPECT_ADAPTER", "SwiftShader")
        .env_remove("GRU_WGPU_ADAPTER");
    let out = cmd.output().expect("running the tests on SwiftShader");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "--- on SwiftShader ({}):\n{text}--- end of SwiftShader's run",
        icd.display()
    );
    assert!(
        out.status.success(),
        "the tests {names:?} fail on SwiftShader"
    );
    assert!(
        text.contains(&format!("test result: ok. {} passed", names.len())),
        "not all of {names:?} ran on SwiftShader"
    );
}
