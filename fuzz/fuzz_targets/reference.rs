//! The reference-file loader (format gru-golden-v1) on arbitrary bytes: it
//! returns Ok or an error, never panics; what loads can be run on the CPU.
#![no_main]

use gru_wgpu::reference::ReferenceCase;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(case) = ReferenceCase::from_bytes(data, "fuzz") {
        // Keep the run cheap: only small cases.
        let c = &case.config;
        let work = [case.seq_len, case.batch, c.hidden_size, c.input_size + c.hidden_size, c.num_layers]
            .iter()
            .fold(1usize, |a, &b| a.saturating_mul(b));
        if work <= 1 << 16 {
            let r = case.run_cpu::<f64>().expect("a loaded case runs");
            let _ = case.compare(&r, 1e-12);
        }
    }
});
