//! The weight-file loader on arbitrary bytes: it returns Ok or an error, never panics.
#![no_main]

use gru_wgpu::{GruConfig, GruParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a configuration, the rest is the file.
    let Some((&pick, bytes)) = data.split_first() else { return };
    let config = match pick % 4 {
        0 => GruConfig::new(3, 4),
        1 => GruConfig::new(3, 4).layers(2).bidirectional(true),
        2 => GruConfig::new(5, 2).bias(false),
        _ => GruConfig::new(1, 1).layers(3),
    };
    if let Ok(p) = GruParams::<f32>::from_safetensors_bytes(bytes, &config, "fuzz") {
        // What loads has exactly the configuration's tensors.
        assert_eq!(p.named().len(), config.param_specs().len());
    }
    let _ = GruParams::<f64>::from_safetensors_bytes(bytes, &config, "fuzz");
});
