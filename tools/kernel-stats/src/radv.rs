//! AMD's compiler without AMD hardware: Mesa's RADV driver with
//! `RADV_FORCE_FAMILY` set enumerates a null device ("Null hardware (RADV
//! NAVI21)") on which `vkCreateComputePipelines` runs ACO for that chip.
//! Nothing is ever submitted (the null device cannot run work); with
//! `VK_KHR_pipeline_executable_properties` and `CAPTURE_STATISTICS` each
//! pipeline reports what ACO made of it: VGPRs, SGPRs, spills, scratch,
//! LDS, waves per SIMD, code size, instruction counts and ACO's latency and
//! inverse-throughput estimates.

use std::ffi::CString;

use ash::vk;

/// One statistic of one executable, as the driver names it.
pub type Stat = (String, f64);

/// A RADV device opened for compiling only.
pub struct Radv {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    exec: ash::khr::pipeline_executable_properties::Device,
    /// The device's name: `Null hardware (RADV NAVI21)` or the like.
    pub name: String,
}

fn vk_err(what: &str) -> impl Fn(vk::Result) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

impl Radv {
    /// Opens the first RADV device the Vulkan loader shows (the caller
    /// points `VK_ICD_FILENAMES` at RADV's manifest and sets
    /// `RADV_FORCE_FAMILY`).
    pub fn open() -> Result<Self, String> {
        // SAFETY: loads the system's Vulkan loader; every handle made below
        // is destroyed in `Drop` before the entry goes.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| format!("no Vulkan loader: {e}"))?;
        let app = vk::ApplicationInfo::default()
            .application_name(c"kernel-stats")
            .api_version(vk::API_VERSION_1_3);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        let instance =
            unsafe { entry.create_instance(&info, None) }.map_err(vk_err("vkCreateInstance"))?;
        match Self::open_device(&instance) {
            Ok((device, name)) => {
                let exec =
                    ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
                Ok(Radv {
                    _entry: entry,
                    instance,
                    device,
                    exec,
                    name,
                })
            }
            Err(e) => {
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn open_device(instance: &ash::Instance) -> Result<(ash::Device, String), String> {
        let devices = unsafe { instance.enumerate_physical_devices() }
            .map_err(vk_err("vkEnumeratePhysicalDevices"))?;
        let mut seen = Vec::new();
        for pd in devices {
            let props = unsafe { instance.get_physical_device_properties(pd) };
            let name = props
                .device_name_as_c_str()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.contains("RADV") {
                seen.push(name);
                continue;
            }
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            let qf = families
                .iter()
                .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .ok_or_else(|| format!("{name}: no compute queue"))?;
            let prio = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(qf as u32)
                .queue_priorities(&prio)];
            let exts = [ash::khr::pipeline_executable_properties::NAME.as_ptr()];
            let mut stats = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
                .pipeline_executable_info(true);
            // What wgpu's SHADER_F16 asks of a Vulkan device.
            let mut f11 = vk::PhysicalDeviceVulkan11Features::default()
                .storage_buffer16_bit_access(true)
                .uniform_and_storage_buffer16_bit_access(true);
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default().shader_float16(true);
            let info = vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_extension_names(&exts)
                .push_next(&mut stats)
                .push_next(&mut f11)
                .push_next(&mut f12);
            let device = unsafe { instance.create_device(pd, &info, None) }
                .map_err(vk_err("vkCreateDevice"))?;
            return Ok((device, name));
        }
        Err(format!(
            "no RADV device (the loader shows: {}); point VK_ICD_FILENAMES at \
             radeon_icd.x86_64.json and set RADV_FORCE_FAMILY",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        ))
    }

    /// Compiles one compute pipeline from `spirv` (entry point `entry`,
    /// descriptor set 0 of `bindings` in order) and returns, per executable
    /// (one for a compute pipeline), its name and statistics.
    pub fn compile(
        &self,
        spirv: &[u32],
        entry: &str,
        bindings: &[vk::DescriptorType],
    ) -> Result<Vec<(String, Vec<Stat>)>, String> {
        let d = &self.device;
        let module = unsafe {
            d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(spirv), None)
        }
        .map_err(vk_err("vkCreateShaderModule"))?;
        let layout_bindings: Vec<vk::DescriptorSetLayoutBinding> = bindings
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i as u32)
                    .descriptor_type(t)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let set_layout = unsafe {
            d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&layout_bindings),
                None,
            )
        }
        .map_err(vk_err("vkCreateDescriptorSetLayout"));
        let set_layout = match set_layout {
            Ok(l) => l,
            Err(e) => {
                unsafe { d.destroy_shader_module(module, None) };
                return Err(e);
            }
        };
        let sets = [set_layout];
        let layout = unsafe {
            d.create_pipeline_layout(
                &vk::PipelineLayoutCreateInfo::default().set_layouts(&sets),
                None,
            )
        }
        .map_err(vk_err("vkCreatePipelineLayout"));
        let result = layout.and_then(|layout| {
            let r = self.compile_in(module, layout, entry);
            unsafe { d.destroy_pipeline_layout(layout, None) };
            r
        });
        unsafe {
            d.destroy_descriptor_set_layout(set_layout, None);
            d.destroy_shader_module(module, None);
        }
        result
    }

    fn compile_in(
        &self,
        module: vk::ShaderModule,
        layout: vk::PipelineLayout,
        entry: &str,
    ) -> Result<Vec<(String, Vec<Stat>)>, String> {
        let d = &self.device;
        let name = CString::new(entry).map_err(|e| format!("entry point {entry:?}: {e}"))?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(&name);
        let info = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(layout)
            .flags(vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR)];
        let pipeline =
            unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &info, None) }
                .map_err(|(_, e)| format!("vkCreateComputePipelines: {e:?}"))?[0];
        let out = self.statistics(pipeline);
        unsafe { d.destroy_pipeline(pipeline, None) };
        out
    }

    fn statistics(&self, pipeline: vk::Pipeline) -> Result<Vec<(String, Vec<Stat>)>, String> {
        let info = vk::PipelineInfoKHR::default().pipeline(pipeline);
        let execs = unsafe { self.exec.get_pipeline_executable_properties(&info) }
            .map_err(vk_err("vkGetPipelineExecutablePropertiesKHR"))?;
        let mut out = Vec::new();
        for (i, e) in execs.iter().enumerate() {
            let exe_name = e
                .name_as_c_str()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            let info = vk::PipelineExecutableInfoKHR::default()
                .pipeline(pipeline)
                .executable_index(i as u32);
            let stats = unsafe { self.exec.get_pipeline_executable_statistics(&info) }
                .map_err(vk_err("vkGetPipelineExecutableStatisticsKHR"))?;
            let stats = stats
                .iter()
                .map(|s| {
                    let name = s
                        .name_as_c_str()
                        .map(|c| c.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // SAFETY: the union's member is the one `format` names.
                    let v = unsafe {
                        match s.format {
                            vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                                f64::from(s.value.b32)
                            }
                            vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64 as f64,
                            vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64 as f64,
                            _ => s.value.f64,
                        }
                    };
                    (name, v)
                })
                .collect();
            out.push((exe_name, stats));
        }
        Ok(out)
    }
}

impl Drop for Radv {
    fn drop(&mut self) {
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
