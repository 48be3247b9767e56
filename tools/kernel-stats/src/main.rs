//! kernel-stats: every pipeline gru-wgpu can build (`kernel_variants` and
//! `kernel_variants_f16`: each shader, entry point, override constants and
//! storage types the planner can choose), compiled by AMD's own shader
//! compiler (ACO, in Mesa's RADV) for several GPU families without the
//! hardware, with the statistics ACO reports: VGPRs, SGPRs, spills, scratch,
//! LDS, waves per SIMD, code size, instructions, latency.
//!
//! ```text
//! cargo run --release -p kernel-stats -- [--family NAVI21]... [--wave 64|32]
//!     [--kernel SUBSTRING] [--precision f32|f16] [--json FILE]
//! ```
//!
//! Each (family, wave size) runs in a child process of its own, with
//! `VK_ICD_FILENAMES` pointing at RADV's manifest (`GRU_WGPU_RADV_ICD`, else
//! `/usr/share/vulkan/icd.d/radeon_icd.x86_64.json`), `RADV_FORCE_FAMILY`
//! naming the chip (a null device), `RADV_PERFTEST=cswave32` for wave32 and
//! `MESA_SHADER_CACHE_DISABLE=true`. The SPIR-V is naga's with the options of
//! wgpu 30's Vulkan back end (`tests/common/spirv.rs`, which the back-end
//! test uses too). Prints a table (a row per pipeline, `VGPRs/waves per
//! SIMD` per target, `!` where it spills or uses scratch) and, with
//! `--json`, writes one JSON object per pipeline and target.

#[path = "../../../tests/common/spirv.rs"]
#[allow(dead_code)]
mod spirv;

mod radv;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use ash::vk;
use gru_wgpu::gpu::ops::{kernel_variants, kernel_variants_f16, Binding, KernelVariant};
use serde_json::json;

use stats::{Record, Table};

/// The families compiled for by default: GCN5 (VEGA10: wave64 only), RDNA1
/// (NAVI10), RDNA2 (NAVI21), RDNA3 (GFX1100).
const FAMILIES: [&str; 4] = ["VEGA10", "NAVI10", "NAVI21", "GFX1100"];

/// RADV's manifest where `GRU_WGPU_RADV_ICD` does not name one.
const RADV_ICD: &str = "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json";

struct Args {
    families: Vec<String>,
    waves: Vec<u32>,
    kernel: Option<String>,
    precision: Option<String>,
    json: Option<PathBuf>,
}

const USAGE: &str = "usage: kernel-stats [--family NAME]... [--wave 64|32] [--kernel SUBSTRING] \
                     [--precision f32|f16] [--json FILE]";

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        families: Vec::new(),
        waves: Vec::new(),
        kernel: None,
        precision: None,
        json: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--family" => a.families.push(value()?.to_ascii_uppercase()),
            "--wave" => match value()?.as_str() {
                "64" => a.waves.push(64),
                "32" => a.waves.push(32),
                w => return Err(format!("--wave {w}: 64 or 32")),
            },
            "--kernel" => a.kernel = Some(value()?),
            "--precision" => match value()?.as_str() {
                p @ ("f32" | "f16") => a.precision = Some(p.to_string()),
                p => return Err(format!("--precision {p}: f32 or f16")),
            },
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            f => return Err(format!("unknown argument {f}\n{USAGE}")),
        }
    }
    if a.families.is_empty() {
        a.families = FAMILIES.iter().map(|f| f.to_string()).collect();
    }
    if a.waves.is_empty() {
        a.waves = vec![64, 32];
    }
    Ok(a)
}

/// The pipelines to compile: every variant in f32 and f16, those whose
/// description contains `kernel` where given.
fn variants(a: &Args) -> Vec<(&'static str, KernelVariant)> {
    let mut all: Vec<(&str, KernelVariant)> = Vec::new();
    if a.precision.as_deref() != Some("f16") {
        all.extend(kernel_variants().into_iter().map(|v| ("f32", v)));
    }
    if a.precision.as_deref() != Some("f32") {
        all.extend(kernel_variants_f16().into_iter().map(|v| ("f16", v)));
    }
    all.retain(|(_, v)| {
        a.kernel
            .as_ref()
            .is_none_or(|k| spirv::describe(v).contains(k.as_str()))
    });
    all
}

/// The descriptor type wgpu's Vulkan back end gives a binding.
fn descriptor_type(b: Binding) -> vk::DescriptorType {
    match b {
        Binding::Params | Binding::Window(_) => vk::DescriptorType::UNIFORM_BUFFER_DYNAMIC,
        Binding::Read | Binding::ReadWrite => vk::DescriptorType::STORAGE_BUFFER,
    }
}

/// The child: compiles every pipeline on the RADV device the environment
/// opens and prints a JSON object per pipeline.
fn child(a: &Args, family: &str, wave: u32) -> ExitCode {
    let dev = match radv::Radv::open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kernel-stats: {family} wave{wave}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut modules = BTreeMap::new();
    for (precision, v) in variants(a) {
        let key = (v.file, format!("{:?}", v.types));
        let parsed = modules
            .entry(key)
            .or_insert_with(|| spirv::parse_and_validate_typed(v.file, v.types));
        let (module, info) = parsed;
        let kernel = spirv::describe(&v);
        let bindings: Vec<vk::DescriptorType> = spirv::sorted_bindings(&v)
            .into_iter()
            .map(|(_, b)| descriptor_type(b))
            .collect();
        // SPIR-V 1.3: Vulkan 1.1, the first with subgroup operations.
        let compiled = spirv::spirv(&v, module, info, (1, 3))
            .and_then(|words| dev.compile(&words, v.entry, &bindings));
        let mut rec = json!({
            "family": family,
            "wave": wave,
            "device": dev.name,
            "kernel": kernel,
            "file": v.file,
            "entry": v.entry,
            "constants": v.constants.iter().map(|(n, x)| (n.to_string(), json!(x))).collect::<serde_json::Map<_, _>>(),
            "precision": precision,
        });
        match compiled {
            Ok(execs) => {
                let stats: serde_json::Map<String, serde_json::Value> = execs
                    .into_iter()
                    .flat_map(|(_, s)| s)
                    .map(|(n, x)| (n, json!(x)))
                    .collect();
                rec["stats"] = json!(stats);
            }
            Err(e) => rec["error"] = json!(e),
        }
        println!("{rec}");
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut raw: Vec<String> = std::env::args().skip(1).collect();
    // `--child FAMILY WAVE ...`: the process of one target.
    let child_of = if raw.first().map(String::as_str) == Some("--child") && raw.len() >= 3 {
        let f = raw.remove(1);
        let w = raw.remove(1);
        raw.remove(0);
        Some((f, w.parse::<u32>().unwrap_or(64)))
    } else {
        None
    };
    let a = match parse_args(raw.clone().into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((family, wave)) = child_of {
        return child(&a, &family, wave);
    }
    let icd = std::env::var("GRU_WGPU_RADV_ICD").unwrap_or_else(|_| RADV_ICD.to_string());
    if !std::path::Path::new(&icd).exists() {
        eprintln!(
            "kernel-stats: RADV's manifest {icd} is missing: apt-get install -y \
             mesa-vulkan-drivers (or set GRU_WGPU_RADV_ICD)"
        );
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kernel-stats: {e}");
            return ExitCode::from(2);
        }
    };
    let mut records: Vec<Record> = Vec::new();
    let mut failed = false;
    for family in &a.families {
        for &wave in &a.waves {
            // GCN (before gfx10) has wave64 only.
            if wave == 32 && family.starts_with("VEGA") {
                continue;
            }
            let mut cmd = Command::new(&exe);
            cmd.arg("--child")
                .arg(family)
                .arg(wave.to_string())
                .args(&raw);
            cmd.env("VK_ICD_FILENAMES", &icd)
                .env("RADV_FORCE_FAMILY", family.to_ascii_lowercase())
                .env("MESA_SHADER_CACHE_DISABLE", "true");
            match wave {
                32 => cmd.env("RADV_PERFTEST", "cswave32"),
                _ => cmd.env_remove("RADV_PERFTEST"),
            };
            let out = match cmd.output() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("kernel-stats: {family} wave{wave}: {e}");
                    failed = true;
                    continue;
                }
            };
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                failed = true;
                continue;
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(v) => records.push(Record::from_json(v)),
                    Err(e) => eprintln!("kernel-stats: {family} wave{wave}: {e}: {line}"),
                }
            }
        }
    }
    if let Some(path) = &a.json {
        let text: String = records.iter().map(|r| format!("{}\n", r.json)).collect();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("kernel-stats: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let table = Table::of(&records);
    print!("{}", table.render());
    let errors: Vec<&Record> = records.iter().filter(|r| r.error.is_some()).collect();
    for r in &errors {
        eprintln!(
            "kernel-stats: {} {} wave{}: {}",
            r.kernel,
            r.family,
            r.wave,
            r.error.as_deref().unwrap_or("")
        );
    }
    if failed || !errors.is_empty() || records.is_empty() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
