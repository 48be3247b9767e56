//! Reference cases: PyTorch-computed forward and backward of one `nn.GRU`
//! configuration, stored as safetensors (format `gru-golden-v1`, described in
//! `tests/data/golden/README.md`), and the comparison of a result against one.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayD, Ix3};

use crate::config::{GruConfig, ResetForm};
use crate::error::{untrusted, GruError, Result};
use crate::params::{GruParams, SafeFile};
use crate::real::{max_abs_error, rel_error, Real};

/// One PyTorch reference case: inputs in float32, results in float64.
#[derive(Clone, Debug)]
pub struct ReferenceCase {
    /// Where it came from (the file's path).
    pub origin: String,
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    /// `(T, B, I)` or `(B, T, I)` where `batch_first`.
    pub x: Array3<f32>,
    /// `(L*D, B, H)`, where the case has one.
    pub h0: Option<Array3<f32>>,
    pub params: GruParams<f32>,
    /// Upstream gradient of `output`.
    pub grad_output: Array3<f32>,
    /// Upstream gradient of `h_n`.
    pub grad_h_n: Array3<f32>,
    /// Per-sequence valid lengths (`has_lengths`), each in `1..=T`.
    pub lengths: Option<Vec<usize>>,
    /// Episode resets (`has_resets`), `(T, B)` or `(B, T)` where `batch_first`.
    pub resets: Option<Array2<bool>>,
    /// What PyTorch computed, in float64.
    pub expected: RunResult,
}

/// Everything a forward and backward produce, in float64 for comparison.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub output: Array3<f64>,
    pub h_n: Array3<f64>,
    pub grad_x: Array3<f64>,
    /// Absent in a reference case without `h0`.
    pub grad_h0: Option<Array3<f64>>,
    pub grad_params: GruParams<f64>,
}

impl RunResult {
    /// A run's forward (`output`, `h_n`) and gradients (of `x`, `h0` and the
    /// parameters) in `F`, as f64.
    fn of<F: Real>(
        output: &Array3<F>,
        h_n: &Array3<F>,
        (grad_x, grad_h0, grad_params): (&Array3<F>, &Array3<F>, &GruParams<F>),
    ) -> Self {
        let to64 = |a: &Array3<F>| a.mapv(|v| v.f64());
        RunResult {
            output: to64(output),
            h_n: to64(h_n),
            grad_x: to64(grad_x),
            grad_h0: Some(to64(grad_h0)),
            grad_params: grad_params.cast::<f64>(),
        }
    }
}

/// The comparison of one tensor against its reference.
#[derive(Clone, Debug)]
pub struct TensorCheck {
    pub name: String,
    pub max_abs: f64,
    /// `||ours - ref|| / ||ref||`.
    pub rel: f64,
    pub bound: f64,
}

impl TensorCheck {
    /// Within its bound (a NaN error is never within).
    pub fn ok(&self) -> bool {
        self.rel <= self.bound
    }
}

/// The metadata keys of format `gru-golden-v1` that this reader implements
/// (`has_lengths`, `has_resets` and `reset_form` are optional).
pub const KNOWN_METADATA: [&str; 16] = [
    "format",
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "direction",
    "batch_first",
    "bias",
    "seq_len",
    "batch",
    "has_h0",
    "has_lengths",
    "has_resets",
    "reset_form",
    "loss",
    "reference",
];

fn meta<'a>(file: &'a SafeFile<'_>, key: &str) -> Result<&'a str> {
    file.metadata()
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| GruError::Format {
            path: file.origin().to_string(),
            message: format!("metadata `{key}` is missing"),
        })
}

fn meta_usize(file: &SafeFile<'_>, key: &str) -> Result<usize> {
    let v = meta(file, key)?;
    v.trim().parse().map_err(|_| GruError::Format {
        path: file.origin().to_string(),
        message: format!(
            "metadata `{key}` is `{}`, not a non-negative integer",
            untrusted(v)
        ),
    })
}

fn meta_bool(file: &SafeFile<'_>, key: &str) -> Result<bool> {
    match meta(file, key)?.trim() {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        v => Err(GruError::Format {
            path: file.origin().to_string(),
            message: format!("metadata `{key}` is `{}`, not true or false", untrusted(v)),
        }),
    }
}

/// Where `file` is a file of GRU weights (PyTorch's parameter names, no
/// `format` metadata: a `state_dict` saved with safetensors, or what
/// `GruParams::save_safetensors` and `import-onnx` write) rather than a
/// reference case, what `verify` needs instead and the command that makes
/// it from these weights, with the sizes read from the file.
fn weights_file(file: &SafeFile<'_>) -> Option<String> {
    let names = file.names();
    let w_ih = file.shape("weight_ih_l0").ok()?;
    let w_hh = file.shape("weight_hh_l0").ok()?;
    let (&[_, i], &[_, h]) = (w_ih.as_slice(), w_hh.as_slice()) else {
        return None;
    };
    // (A set: a crafted file may hold millions of names.)
    let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let has = |n: &str| set.contains(n);
    let layers = (0..)
        .take_while(|l| has(&format!("weight_ih_l{l}")))
        .count();
    let m = file.metadata();
    let flag = |key: &str| m.get(key).is_some_and(|v| v == "true");
    let mut args = format!("--input-size {i} --hidden-size {h} --num-layers {layers}");
    if has("weight_ih_l0_reverse") {
        args += " --bidirectional";
    }
    if flag("batch_first") {
        args += " --batch-first";
    }
    if !has("bias_ih_l0") {
        args += " --no-bias";
    }
    let mut message = format!(
        "a file of GRU weights ({} tensors, `weight_ih_l0` among them, and no `format` \
         metadata), not a reference case: `verify` needs a reference case, the inputs, \
         weights and PyTorch's outputs and gradients of one forward and backward (format \
         gru-golden-v1, see tests/data/golden/README.md); make one from these weights with \
         `python3 scripts/make_reference.py {args} --seq-len 10 --batch 2 \
         --state-dict {} out.safetensors`, then `gru-wgpu verify out.safetensors`",
        names.len(),
        file.origin()
    );
    if m.get("reset_form").is_some_and(|v| v == "before") {
        message += "; but these weights are of the reset-before form (ONNX's \
                    linear_before_reset = 0), which nn.GRU does not compute: check them \
                    with an onnxruntime case (format onnx-gru-v1) instead";
    }
    Some(message)
}

fn into3<F: Real>(a: ArrayD<F>) -> Array3<F> {
    a.into_dimensionality::<Ix3>()
        .expect("shape checked to have 3 dimensions")
}

impl ReferenceCase {
    /// Reads a reference file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::files::read_safetensors(path)?;
        Self::from_bytes(&bytes, &crate::error::shown_path(path))
    }

    /// Reads a reference case from bytes; `origin` names it in errors.
    ///
    /// Nothing is sized from the metadata before it has been checked against
    /// the tensors the file holds; a metadata key or a tensor that this
    /// reader does not know, or a tensor of another dtype than the format's,
    /// is refused (a file meant for another computation is never checked
    /// against this one).
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let file = SafeFile::parse(bytes, origin)?;
        let format_err = |message: String| GruError::Format {
            path: origin.to_string(),
            message,
        };
        if !file.metadata().contains_key("format") {
            if let Some(why) = weights_file(&file) {
                return Err(format_err(why));
            }
        }
        let format = meta(&file, "format")?;
        if format != "gru-golden-v1" {
            return Err(format_err(format!(
                "metadata `format` is `{}`, expected `gru-golden-v1`",
                untrusted(format)
            )));
        }
        let mut unknown: Vec<(&String, &String)> = file
            .metadata()
            .iter()
            .filter(|(k, _)| !KNOWN_METADATA.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some((k, v)) = unknown.first() {
            return Err(format_err(format!(
                "metadata `{}` = `{}` is not supported by this reader; \
                 the file describes a computation it does not implement, so it is refused \
                 rather than checked against plain nn.GRU",
                untrusted(k),
                untrusted(v)
            )));
        }
        let optional_bool = |key: &str| -> Result<bool> {
            if file.metadata().contains_key(key) {
                meta_bool(&file, key)
            } else {
                Ok(false)
            }
        };
        let has_lengths = optional_bool("has_lengths")?;
        let has_resets = optional_bool("has_resets")?;
        let reset_form = match file.metadata().get("reset_form") {
            None => ResetForm::After,
            Some(v) => ResetForm::parse(v.trim()).ok_or_else(|| {
                format_err(format!(
                    "metadata `reset_form` is `{}`, expected `after` or `before`",
                    untrusted(v)
                ))
            })?,
        };
        let direction = crate::config::Direction::of_metadata(
            meta_bool(&file, "bidirectional")?,
            file.metadata().get("direction").map(String::as_str),
        )
        .map_err(format_err)?;
        let config = GruConfig {
            input_size: meta_usize(&file, "input_size")?,
            hidden_size: meta_usize(&file, "hidden_size")?,
            num_layers: meta_usize(&file, "num_layers")?,
            direction,
            batch_first: meta_bool(&file, "batch_first")?,
            bias: meta_bool(&file, "bias")?,
            dropout: 0.0,
            reset_form,
            precision: crate::config::Precision::F32,
        };
        config.validate().map_err(|e| format_err(e.to_string()))?;
        let seq_len = meta_usize(&file, "seq_len")?;
        let batch = meta_usize(&file, "batch")?;
        if seq_len == 0 || batch == 0 {
            return Err(format_err(format!(
                "seq_len {seq_len} and batch {batch} must both be at least 1"
            )));
        }
        let has_h0 = meta_bool(&file, "has_h0")?;
        // The number of tensors the metadata asks for, before any list of
        // them is built: each parameter and its gradient, plus x, grad_output,
        // grad_h_n, output, h_n, grad.x, and h0 and grad.h0 where there is an h0.
        let per_dir = if config.bias { 4usize } else { 2 };
        let held = file.names().len();
        let needed = config
            .num_layers
            .checked_mul(config.num_directions())
            .and_then(|n| n.checked_mul(2 * per_dir))
            .and_then(|n| n.checked_add(if has_h0 { 8 } else { 6 }))
            .and_then(|n| n.checked_add(has_lengths as usize + has_resets as usize));
        if needed != Some(held) {
            return Err(format_err(format!(
                "the metadata (num_layers {}, bidirectional {}{}, bias {}, has_h0 {}{}{}) describes {} tensors, \
                 the file holds {held}",
                config.num_layers,
                config.is_bidirectional(),
                if config.direction == crate::config::Direction::Reverse {
                    ", direction reverse"
                } else {
                    ""
                },
                config.bias,
                has_h0,
                if has_lengths { ", has_lengths true" } else { "" },
                if has_resets { ", has_resets true" } else { "" },
                needed.map_or_else(|| "more".to_string(), |n| n.to_string()),
            )));
        }
        let specs = config.param_specs();
        let mut known: Vec<String> = ["x", "grad_output", "grad_h_n", "output", "h_n", "grad.x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if has_h0 {
            known.extend(["h0".to_string(), "grad.h0".to_string()]);
        }
        if has_lengths {
            known.push("lengths".to_string());
        }
        if has_resets {
            known.push("resets".to_string());
        }
        for spec in &specs {
            known.push(spec.name.clone());
            known.push(format!("grad.{}", spec.name));
        }
        if let Some(name) = file.names().into_iter().find(|n| !known.contains(n)) {
            return Err(GruError::UnexpectedTensor {
                shape: file.shape(&name)?.into(),
                name,
                file: Some(origin.to_string()),
            });
        }
        let xs = config.input_shape(seq_len, batch);
        let os = config.output_shape(seq_len, batch);
        let ss = config.state_shape(batch);
        let f32_ = |name: &str, shape: &[usize]| {
            file.tensor_typed::<f32>(name, safetensors::Dtype::F32, shape)
                .map(into3)
        };
        let f64_ = |name: &str, shape: &[usize]| {
            file.tensor_typed::<f64>(name, safetensors::Dtype::F64, shape)
        };
        // The shapes of the small tensors first: they pin every size.
        let h_n = into3(f64_("h_n", &ss)?);
        let x = f32_("x", &xs)?;
        let h0 = if has_h0 { Some(f32_("h0", &ss)?) } else { None };
        let lengths = if has_lengths {
            let v = file.int_tensor("lengths", safetensors::Dtype::I64, "I64", &[batch])?;
            if let Some((i, l)) = v
                .iter()
                .enumerate()
                .find(|(_, &l)| l < 1 || l > seq_len as i64)
            {
                return Err(format_err(format!(
                    "lengths[{i}] is {l}; every length must be in 1..={seq_len} (seq_len)"
                )));
            }
            Some(v.into_iter().map(|l| l as usize).collect())
        } else {
            None
        };
        let resets = if has_resets {
            let shape = if config.batch_first {
                [batch, seq_len]
            } else {
                [seq_len, batch]
            };
            let v = file.int_tensor("resets", safetensors::Dtype::U8, "U8", &shape)?;
            if let Some((i, r)) = v.iter().enumerate().find(|(_, &r)| r > 1) {
                return Err(format_err(format!(
                    "resets holds {r} at flat index {i}; every value must be 0 or 1"
                )));
            }
            let flags = v.into_iter().map(|r| r == 1).collect();
            Some(Array2::from_shape_vec(shape, flags).expect("shape checked"))
        } else {
            None
        };
        let mut p32 = BTreeMap::new();
        let mut g64 = BTreeMap::new();
        for spec in &specs {
            p32.insert(
                spec.name.clone(),
                file.tensor_typed::<f32>(&spec.name, safetensors::Dtype::F32, &spec.shape)?,
            );
            g64.insert(
                spec.name.clone(),
                f64_(&format!("grad.{}", spec.name), &spec.shape)?,
            );
        }
        let params = GruParams::from_named(&config, &p32).map_err(|e| e.in_file(origin))?;
        let grad_params = GruParams::from_named(&config, &g64).map_err(|e| e.in_file(origin))?;
        let expected = RunResult {
            output: into3(f64_("output", &os)?),
            h_n,
            grad_x: into3(f64_("grad.x", &xs)?),
            grad_h0: if has_h0 {
                Some(into3(f64_("grad.h0", &ss)?))
            } else {
                None
            },
            grad_params,
        };
        Ok(ReferenceCase {
            origin: origin.to_string(),
            config,
            seq_len,
            batch,
            x,
            h0,
            params,
            grad_output: f32_("grad_output", &os)?,
            grad_h_n: f32_("grad_h_n", &ss)?,
            lengths,
            resets,
            expected,
        })
    }

    /// Compares `ours` against the reference, tensor by tensor, each against `bound`.
    /// `grad.h0` is compared only where the case has an `h0`.
    pub fn compare(&self, ours: &RunResult, bound: f64) -> Vec<TensorCheck> {
        let mut out = Vec::new();
        let mut push =
            |name: String, a: &mut dyn Iterator<Item = f64>, b: &mut dyn Iterator<Item = &f64>| {
                let a: Vec<f64> = a.collect();
                let b: Vec<&f64> = b.collect();
                out.push(TensorCheck {
                    name,
                    max_abs: max_abs_error(a.iter().copied(), b.iter().copied()),
                    rel: rel_error(a.iter().copied(), b.iter().copied()),
                    bound,
                });
            };
        let e = &self.expected;
        push(
            "output".into(),
            &mut ours.output.iter().copied(),
            &mut e.output.iter(),
        );
        push(
            "h_n".into(),
            &mut ours.h_n.iter().copied(),
            &mut e.h_n.iter(),
        );
        push(
            "grad.x".into(),
            &mut ours.grad_x.iter().copied(),
            &mut e.grad_x.iter(),
        );
        if let (Some(r), Some(o)) = (&e.grad_h0, &ours.grad_h0) {
            push("grad.h0".into(), &mut o.iter().copied(), &mut r.iter());
        }
        for ((spec, r), (_, o)) in e
            .grad_params
            .named()
            .into_iter()
            .zip(ours.grad_params.named())
        {
            push(
                format!("grad.{}", spec.name),
                &mut o.iter().copied(),
                &mut r.iter(),
            );
        }
        out
    }

    /// Runs the CPU reference in `F` on this case: forward, then backward with
    /// the case's upstream gradients.
    pub fn run_cpu<F: Real>(&self) -> Result<RunResult> {
        let c = |a: &Array3<f32>| a.mapv(|v| F::of(v as f64));
        let mut gru = crate::cpu::Gru::new(self.params.cast::<F>());
        let h0 = self.h0.as_ref().map(c);
        let opts = crate::cpu::SeqOptions::new()
            .lengths(self.lengths.clone())
            .resets(self.resets.clone());
        let (output, h_n) =
            gru.forward_with(c(&self.x).view(), h0.as_ref().map(|h| h.view()), &opts)?;
        let g = gru.backward(c(&self.grad_output).view(), Some(c(&self.grad_h_n).view()))?;
        Ok(RunResult::of(&output, &h_n, (&g.x, &g.h0, &g.params)))
    }
}

impl ReferenceCase {
    /// Runs the GPU (f32) on this case: forward, then backward with the
    /// case's upstream gradients.
    pub fn run_gpu(&self, ctx: &crate::gpu::GpuContext) -> Result<RunResult> {
        self.run_gpu_plan(ctx, None)
    }

    /// The same case for a GPU model in `precision` (its bound is then
    /// [`gpu_bound`](Self::gpu_bound)'s); the CPU reference ignores it.
    pub fn with_precision(mut self, precision: crate::config::Precision) -> Self {
        self.params = self.params.with_precision(precision);
        self.config.precision = precision;
        self
    }

    /// The bound of this case's GPU run: [`GPU_BOUND`] in f32,
    /// [`GPU_F16_BOUND`] in f16.
    pub fn gpu_bound(&self) -> f64 {
        match self.config.precision {
            crate::config::Precision::F32 => GPU_BOUND,
            crate::config::Precision::F16 => GPU_F16_BOUND,
        }
    }

    /// [`run_gpu`](Self::run_gpu) with `plan` forced (`None`: the automatic plan).
    pub fn run_gpu_plan(
        &self,
        ctx: &crate::gpu::GpuContext,
        plan: Option<crate::gpu::Plan>,
    ) -> Result<RunResult> {
        self.check_gpu()?;
        let model = crate::gpu::GpuGru::new(ctx, &self.params)?;
        model.set_plan(plan);
        self.run_model(&model)
    }

    /// The features of this case beyond plain `nn.GRU` (variable lengths,
    /// episode resets, the reset-before form), by name.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.lengths.is_some() {
            f.push("variable sequence lengths (has_lengths)");
        }
        if self.resets.is_some() {
            f.push("episode resets (has_resets)");
        }
        if self.config.reset_form == ResetForm::Before {
            f.push("the reset-before form (reset_form = before)");
        }
        f
    }

    /// Refuses a case with a feature the GPU does not implement, naming it
    /// (none at present: `GpuGru::new` refuses a configuration it cannot run).
    fn check_gpu(&self) -> Result<()> {
        Ok(())
    }

    fn run_model(&self, model: &crate::gpu::GpuGru) -> Result<RunResult> {
        let opts = crate::gpu::ForwardOptions::default()
            .h0(self.h0.as_ref().map(|h| h.view()))
            .lengths(self.lengths.clone())
            .resets(self.resets.clone())
            .keep_tape();
        let f = model.forward(self.x.view(), opts)?;
        let (output, h_n, tape) = (f.output, f.h_n, f.tape.expect("kept"));
        let grad_h_n = crate::gpu::BackwardOptions::default().grad_h_n(self.grad_h_n.view());
        let g = model.backward(tape, self.grad_output.view(), grad_h_n)?;
        Ok(RunResult::of(&output, &h_n, (&g.x, &g.h0, &g.params)))
    }

    /// A one-line description of the configuration.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "I={} H={} layers={} {} batch_first={} bias={} T={} B={} h0={}{}{}{}",
            c.input_size,
            c.hidden_size,
            c.num_layers,
            match c.direction {
                crate::config::Direction::Bidirectional => "bidirectional=true",
                crate::config::Direction::Forward => "bidirectional=false",
                crate::config::Direction::Reverse => "direction=reverse",
            },
            c.batch_first,
            c.bias,
            self.seq_len,
            self.batch,
            self.h0.is_some(),
            if self.lengths.is_some() {
                " lengths"
            } else {
                ""
            },
            if self.resets.is_some() { " resets" } else { "" },
            if c.reset_form == ResetForm::Before {
                " reset_form=before"
            } else {
                ""
            },
        )
    }
}

/// The bound of the f64 CPU reference against PyTorch's float64 results.
pub const CPU_BOUND: f64 = 1e-12;
/// The bound of the f32 GPU against PyTorch's float64 results.
pub const GPU_BOUND: f64 = 1e-5;
/// The bound of the GPU in f16 storage ([`Precision::F16`](crate::Precision))
/// against PyTorch's float64 results: PyTorch's own f16 GRU reaches 0.8e-3
/// to 1.7e-3 on the public cases (`scripts/torch_half_accuracy.py`).
pub const GPU_F16_BOUND: f64 = 2e-3;
