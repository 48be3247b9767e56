//! The ONNX model reader (what `import-onnx` runs: the wire-format count,
//! the decoding, the GRU node's checks, the parameters in PyTorch's order)
//! on arbitrary bytes: it returns Ok or an error, never panics, never aborts
//! on an allocation; what loads gives parameters that serialize and load back.
#![no_main]

use gru_wgpu::onnx::OnnxGru;
use gru_wgpu::GruParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for node in [None, Some("GRU")] {
        let Ok(gru) = OnnxGru::from_bytes(data, "fuzz", node) else {
            continue;
        };
        let _ = gru.config();
        if let Ok(params) = gru.params() {
            let bytes = params.to_safetensors_bytes().expect("parameters serialize");
            let back = GruParams::<f32>::from_safetensors_bytes(&bytes, params.config(), "fuzz")
                .expect("what import-onnx writes loads back");
            assert_eq!(back.config(), params.config());
        }
    }
});
