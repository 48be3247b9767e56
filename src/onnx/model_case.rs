//! Reference cases of format `onnx-model-v1`: a whole ONNX model as
//! `import-onnx` imports it (one GRU node or a stack, `batch_first` from a
//! layout or from the exporter's Transposes, external data), with the
//! inputs that were fed to its graph and what onnxruntime (and, for torch
//! exports, torch) computed, in `nn.GRU`'s shapes.
//!
//! Metadata (all strings): `format` (`onnx-model-v1`), `model` (the
//! `.onnx` file, in the case's folder), the configuration the import must
//! give (`input_size`, `hidden_size`, `num_layers`, `bidirectional`,
//! `batch_first`, `bias`, `reset_form`), `seq_len`, `batch`, `has_h0` and
//! `has_lengths` (`true`/`false`: whether the graph takes an initial state
//! and lengths, and the file holds them), `reference` (who computed the
//! outputs), and optionally `made_by` (how the model was made). Any other
//! key is refused.
//!
//! Tensors, float32 unless said: `x` `(T, B, I)` or `(B, T, I)` where
//! `batch_first`; `h0` `(L·D, B, H)` where `has_h0`; `lengths` (int32,
//! `(B)`, each in `1..=T`) where `has_lengths`; `output` `(T, B, D·H)` or
//! `(B, T, D·H)` and `h_n` `(L·D, B, H)` as onnxruntime computed them; and,
//! optionally and together, `torch_output` and `torch_h_n` as torch did.

use std::path::Path;

use ndarray::Array3;

use super::{err, CaseMeta, OnnxStack};
use crate::config::GruConfig;
use crate::error::{untrusted, Result};
use crate::params::SafeFile;
use crate::real::{max_abs_error, rel_error, Real};
use crate::reference::TensorCheck;

/// The metadata keys of format `onnx-model-v1` (`made_by` may be absent).
pub const ONNX_MODEL_METADATA: [&str; 16] = [
    "format",
    "model",
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "direction",
    "batch_first",
    "bias",
    "reset_form",
    "seq_len",
    "batch",
    "has_h0",
    "has_lengths",
    "reference",
    "made_by",
];

/// One `onnx-model-v1` case: the imported model, its inputs and the
/// reference outputs.
#[derive(Clone, Debug)]
pub struct OnnxModelCase {
    /// The case's file, as messages show it.
    pub origin: String,
    /// The model, imported.
    pub stack: OnnxStack,
    /// Its configuration (the metadata's, checked against the import's).
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    /// `(T, B, I)` or `(B, T, I)`.
    pub x: Array3<f32>,
    /// `(L·D, B, H)`, where the graph takes one.
    pub h0: Option<Array3<f32>>,
    /// Per-sequence lengths, where the graph takes them.
    pub lengths: Option<Vec<usize>>,
    /// onnxruntime's `output`.
    pub output: Array3<f64>,
    /// onnxruntime's `h_n`.
    pub h_n: Array3<f64>,
    /// torch's `output` and `h_n`, where the file has them.
    pub torch: Option<(Array3<f64>, Array3<f64>)>,
    /// The metadata `made_by`, where present.
    pub made_by: Option<String>,
}

/// What a run gives, in `nn.GRU`'s shapes.
#[derive(Clone, Debug)]
pub struct ModelResult {
    pub output: Array3<f64>,
    pub h_n: Array3<f64>,
}

/// Whether a safetensors file says it is of format `onnx-model-v1`.
pub fn is_onnx_model_case(path: impl AsRef<Path>) -> bool {
    super::case_format(path).as_deref() == Some("onnx-model-v1")
}

impl OnnxModelCase {
    /// Reads a case and imports the model its metadata `model` names (in
    /// the same folder), checking the import's configuration, initial
    /// state and lengths against the metadata.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        super::read_case(
            path,
            ("onnx-model-v1", &ONNX_MODEL_METADATA),
            |file, meta| Self::read(path, file, meta),
        )
    }

    /// [`load`](Self::load) on the file, its format and keys checked.
    fn read(path: &Path, file: &SafeFile, meta: &CaseMeta) -> Result<Self> {
        let (origin, m) = (meta.origin, meta.m);
        let (get, flag) = (|k: &str| meta.get(k), |k: &str| meta.flag(k));
        get("reference")?;
        let (model_path, model) = meta.model_path(path)?;
        let stack = OnnxStack::load(&model_path, None)?;
        let config = stack.config()?;
        // The metadata's configuration must be the import's (a reverse
        // model's metadata says `direction = reverse`).
        let mut keys = vec![];
        if config.direction == crate::config::Direction::Reverse || m.get("direction").is_some() {
            keys.push(("direction", config.direction.name().to_string()));
        }
        for (key, want) in keys.into_iter().chain([
            ("input_size", config.input_size.to_string()),
            ("hidden_size", config.hidden_size.to_string()),
            ("num_layers", config.num_layers.to_string()),
            ("bidirectional", config.is_bidirectional().to_string()),
            ("batch_first", config.batch_first.to_string()),
            ("bias", config.bias.to_string()),
            ("reset_form", config.reset_form.name().to_string()),
        ]) {
            let have = get(key)?;
            if have != want {
                return Err(err(
                    origin,
                    format!(
                        "metadata `{key}` is `{}` but the model {model} imports with `{want}`",
                        untrusted(have)
                    ),
                ));
            }
        }
        let (has_h0, has_lengths) = (flag("has_h0")?, flag("has_lengths")?);
        let takes_h0 = !stack
            .report
            .initial_state
            .iter()
            .all(super::stack::InitialState::is_zeros);
        if has_h0 != takes_h0 {
            return Err(err(
                origin,
                format!(
                    "metadata `has_h0` is `{has_h0}` but the model {model} {} an initial state",
                    if takes_h0 { "takes" } else { "takes no" }
                ),
            ));
        }
        if has_lengths != stack.report.lengths.is_some() {
            return Err(err(
                origin,
                format!(
                    "metadata `has_lengths` is `{has_lengths}` but the model {model} {} sequence_lens",
                    if has_lengths { "takes no" } else { "takes" }
                ),
            ));
        }
        let (seq_len, batch) = meta.seq_len_batch()?;
        let known = [
            "x",
            "h0",
            "lengths",
            "output",
            "h_n",
            "torch_output",
            "torch_h_n",
        ];
        super::refuse_unknown_tensors(file, &known, origin)?;
        let (i, h, l) = (config.input_size, config.hidden_size, config.num_layers);
        let d = config.num_directions();
        let (x_shape, out_shape) = if config.batch_first {
            ([batch, seq_len, i], [batch, seq_len, d * h])
        } else {
            ([seq_len, batch, i], [seq_len, batch, d * h])
        };
        let state_shape = [l * d, batch, h];
        let three = |a: ndarray::ArrayD<f64>| {
            a.into_dimensionality::<ndarray::Ix3>()
                .expect("shape checked")
        };
        let f32_ = |name: &str, shape: &[usize]| {
            file.tensor_typed::<f32>(name, safetensors::Dtype::F32, shape)
                .map(|a| {
                    a.into_dimensionality::<ndarray::Ix3>()
                        .expect("shape checked")
                })
        };
        let f64_ = |name: &str, shape: &[usize]| {
            file.tensor_typed::<f64>(name, safetensors::Dtype::F32, shape)
                .map(three)
        };
        let x = f32_("x", &x_shape)?;
        let present = |name: &str, wanted: bool, key: &str| -> Result<()> {
            if file.has(name) != wanted {
                return Err(err(
                    origin,
                    format!(
                        "metadata `{key}` is `{wanted}` but the file {} a tensor `{name}`",
                        if file.has(name) { "has" } else { "has no" }
                    ),
                ));
            }
            Ok(())
        };
        present("h0", has_h0, "has_h0")?;
        present("lengths", has_lengths, "has_lengths")?;
        let h0 = if has_h0 {
            Some(f32_("h0", &state_shape)?)
        } else {
            None
        };
        let lengths = if has_lengths {
            Some(super::read_lengths(
                file,
                "lengths",
                (seq_len, batch),
                origin,
            )?)
        } else {
            None
        };
        let output = f64_("output", &out_shape)?;
        let h_n = f64_("h_n", &state_shape)?;
        let torch = match (file.has("torch_output"), file.has("torch_h_n")) {
            (true, true) => Some((
                f64_("torch_output", &out_shape)?,
                f64_("torch_h_n", &state_shape)?,
            )),
            (false, false) => None,
            _ => {
                return Err(err(
                    origin,
                    "the file has one of `torch_output` and `torch_h_n` without the other",
                ))
            }
        };
        Ok(OnnxModelCase {
            origin: origin.to_string(),
            stack,
            config,
            seq_len,
            batch,
            x,
            h0,
            lengths,
            output,
            h_n,
            torch,
            made_by: m.get("made_by").cloned(),
        })
    }

    /// Runs the CPU reference in `F` on the case's inputs.
    pub fn run_cpu<F: Real>(&self) -> Result<ModelResult> {
        let params = self.stack.params()?;
        let (output, h_n) =
            super::cpu_forward::<F>(&params, &self.x, self.h0.as_ref(), self.lengths.clone())?;
        Ok(ModelResult { output, h_n })
    }

    /// Runs the GPU with the model in `precision` and `plan` forced
    /// (`None`: the automatic plan).
    pub fn run_gpu_plan(
        &self,
        ctx: &crate::gpu::GpuContext,
        precision: crate::config::Precision,
        plan: Option<crate::gpu::Plan>,
    ) -> Result<ModelResult> {
        let params = self.stack.params()?;
        let (x, h0, lengths) = (&self.x, self.h0.as_ref(), self.lengths.clone());
        let (output, h_n) = super::gpu_forward(ctx, &params, (precision, plan), x, h0, lengths)?;
        Ok(ModelResult { output, h_n })
    }

    /// Compares `output` and `h_n` against onnxruntime's, and against
    /// torch's where the file has them, each against `bound`.
    pub fn compare(&self, ours: &ModelResult, bound: f64) -> Vec<TensorCheck> {
        let check = |name: &str, a: &Array3<f64>, b: &Array3<f64>| TensorCheck {
            name: name.to_string(),
            max_abs: max_abs_error(a.iter().copied(), b.iter()),
            rel: rel_error(a.iter().copied(), b.iter()),
            bound,
        };
        let mut out = vec![
            check("output (onnxruntime)", &ours.output, &self.output),
            check("h_n (onnxruntime)", &ours.h_n, &self.h_n),
        ];
        if let Some((o, h)) = &self.torch {
            out.push(check("output (torch)", &ours.output, o));
            out.push(check("h_n (torch)", &ours.h_n, h));
        }
        out
    }

    /// The steps a GPU call of this case runs: to the longest length.
    pub fn steps(&self) -> usize {
        self.lengths
            .as_ref()
            .and_then(|l| l.iter().max().copied())
            .unwrap_or(self.seq_len)
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "ONNX model of {} GRU node{} I={} H={} layers={} direction={} batch_first={} bias={} reset_form={} T={} B={} h0={} lengths={}",
            self.stack.layers.len(),
            if self.stack.layers.len() == 1 { "" } else { "s" },
            c.input_size,
            c.hidden_size,
            c.num_layers,
            c.direction.name(),
            c.batch_first,
            c.bias,
            c.reset_form.name(),
            self.seq_len,
            self.batch,
            self.h0.is_some(),
            self.lengths
                .as_ref()
                .map_or("none".to_string(), |l| format!("{l:?}")),
        )
    }
}
