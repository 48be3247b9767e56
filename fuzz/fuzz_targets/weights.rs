//! The weight-file loader on arbitrary bytes: it returns Ok or an error, never
//! panics, never aborts on an allocation; what loads holds exactly the file's values.
#![no_main]

use gru_wgpu::{GruConfig, GruParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a configuration (the last ones absurdly large,
    // which must be refused before anything is sized from them), the rest is
    // the file.
    let Some((&pick, bytes)) = data.split_first() else { return };
    let config = match pick % 8 {
        0 => GruConfig::new(3, 4),
        1 => GruConfig::new(3, 4).layers(2).bidirectional(true),
        2 => GruConfig::new(5, 2).bias(false),
        3 => GruConfig::new(1, 1).layers(3),
        4 => GruConfig::new(3, 4).layers(1_000_000_000),
        5 => GruConfig::new(1 << 24, 1 << 24).layers(1 << 20),
        6 => GruConfig::new(100_000, 100_000),
        _ => GruConfig::new(2, 2).layers(usize::MAX).bidirectional(true),
    };
    if let Ok(p) = GruParams::<f32>::from_safetensors_bytes(bytes, &config, "fuzz") {
        // Every tensor of the file is a parameter, with the file's values.
        let st = safetensors::SafeTensors::deserialize(bytes).expect("it loaded");
        assert_eq!(st.names().len(), config.param_specs().len());
        for (name, view) in st.tensors() {
            let got = p.get(&name).expect("a loaded tensor is a parameter");
            assert_eq!(got.shape(), view.shape());
            let want: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                safetensors::Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!("a tensor of dtype {other:?} loaded"),
            };
            for (a, b) in got.iter().zip(&want) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
        }
    }
    let _ = GruParams::<f64>::from_safetensors_bytes(bytes, &config, "fuzz");
});
