//! The ONNX model reader (what `import-onnx` runs: the wire-format count,
//! the decoding, the GRU nodes' checks, the stack they make, the
//! parameters in PyTorch's order) on arbitrary bytes: it returns Ok or an
//! error, never panics, never aborts on an allocation; what loads gives
//! parameters that serialize and load back. (No folder: external data is
//! refused without a read.)
#![no_main]

use gru_wgpu::onnx::OnnxStack;
use gru_wgpu::GruParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for node in [None, Some("GRU")] {
        let Ok(stack) = OnnxStack::from_bytes(data, "fuzz", node) else {
            continue;
        };
        let _ = stack.config();
        let _ = stack.describe();
        if let Ok(params) = stack.params() {
            let bytes = params.to_safetensors_bytes().expect("parameters serialize");
            let back = GruParams::<f32>::from_safetensors_bytes(&bytes, params.config(), "fuzz")
                .expect("what import-onnx writes loads back");
            assert_eq!(back.config(), params.config());
        }
    }
});
