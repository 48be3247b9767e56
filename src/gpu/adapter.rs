//! Adapters: which wgpu sees (one instance for every context the crate
//! opens), how they are described, and the one a selector names.

use crate::error::{GruError, Result};

/// What the adapter is, in wgpu's own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    /// The driver's name and version, where the adapter says.
    pub driver: String,
}

impl AdapterSummary {
    test_hook! {
        /// The backend's short name: `vulkan`, `metal`, `dx12`, `gl`, `webgpu`
        /// (the names a `ContextOptions::adapter` selector takes).
        pub fn backend_name(&self) -> &'static str {
            backend_name(self.backend)
        }
    }

    /// The device type in words: `discrete GPU`, `CPU (software)`, ...
    pub(crate) fn device_type_name(&self) -> &'static str {
        match self.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Cpu => "CPU (software)",
            wgpu::DeviceType::Other => "other",
        }
    }

    test_hook! {
        /// Whether it is a CPU (software) adapter, such as llvmpipe.
        pub fn is_cpu(&self) -> bool {
            self.device_type == wgpu::DeviceType::Cpu
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.name,
            self.backend_name(),
            self.device_type_name()
        )?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        Ok(())
    }
}

/// The one wgpu instance of every context the crate opens itself: buffers
/// of two such contexts live in one registry, where wgpu-core knows which
/// device made each (see [`Device::check_owned`]).
pub(crate) fn instance() -> &'static wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
    })
}

pub(crate) fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    }
}

pub(crate) fn summarize(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: info.backend,
        device_type: info.device_type,
        driver: [info.driver.as_str(), info.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The adapters wgpu can see, as summaries.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| summarize(&a.get_info()))
        .collect()
}

/// The adapter that `selector` names (a case-insensitive substring of its
/// name, or a backend), or without one the default high-performance adapter.
pub(crate) fn find_adapter(selector: Option<&str>) -> Result<wgpu::Adapter> {
    let instance = instance();
    match selector {
        Some(sel) => {
            let sel_l = sel.trim().to_lowercase();
            let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
            let names: Vec<String> = all
                .iter()
                .map(|a| summarize(&a.get_info()).to_string())
                .collect();
            all.into_iter()
                .find(|a| {
                    let info = a.get_info();
                    info.name.to_lowercase().contains(&sel_l) || backend_name(info.backend) == sel_l
                })
                .ok_or_else(|| {
                    GruError::NoAdapter(format!(
                        "none matches `{sel}` (by name substring or backend); adapters found: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join("; ")
                        }
                    ))
                })
        }
        None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| GruError::NoAdapter(e.to_string())),
    }
}
