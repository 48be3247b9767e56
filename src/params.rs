//! GRU parameters in PyTorch's layout and names, their initialisation, and
//! loading and saving them as safetensors.
//!
//! Layer-direction `k = l * D + d` holds
//! - `weight_ih_l{l}[_reverse]`: `(3H, I_l)`, rows stacked r, z, n;
//! - `weight_hh_l{l}[_reverse]`: `(3H, H)`, rows stacked r, z, n;
//! - `bias_ih_l{l}[_reverse]`, `bias_hh_l{l}[_reverse]`: `(3H)`, where `bias` is set;
//!
//! with `I_0 = I` and `I_l = D * H` above the first layer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, IxDyn};
use rand::{Rng, SeedableRng};

use crate::config::{GruConfig, ParamKind, ParamSpec};
use crate::error::{GruError, Result, Shape};
use crate::real::Real;

/// The four parameter tensors of one layer-direction.
#[derive(Clone, Debug, PartialEq)]
pub struct DirParams<F> {
    /// `(3H, I_l)`
    pub weight_ih: Array2<F>,
    /// `(3H, H)`
    pub weight_hh: Array2<F>,
    /// `(3H)`, absent without bias
    pub bias_ih: Option<Array1<F>>,
    /// `(3H)`, absent without bias
    pub bias_hh: Option<Array1<F>>,
}

impl<F: Real> DirParams<F> {
    /// All zeros, with the shapes of layer `layer` of `config`.
    pub fn zeros(config: &GruConfig, layer: usize) -> Self {
        let h3 = 3 * config.hidden_size;
        DirParams {
            weight_ih: Array2::zeros((h3, config.layer_input_size(layer))),
            weight_hh: Array2::zeros((h3, config.hidden_size)),
            bias_ih: config.bias.then(|| Array1::zeros(h3)),
            bias_hh: config.bias.then(|| Array1::zeros(h3)),
        }
    }

    /// The tensor of one kind, as a dynamic-rank view (`None` for an absent bias).
    pub fn get(&self, kind: ParamKind) -> Option<ArrayViewD<'_, F>> {
        match kind {
            ParamKind::WeightIh => Some(self.weight_ih.view().into_dyn()),
            ParamKind::WeightHh => Some(self.weight_hh.view().into_dyn()),
            ParamKind::BiasIh => self.bias_ih.as_ref().map(|b| b.view().into_dyn()),
            ParamKind::BiasHh => self.bias_hh.as_ref().map(|b| b.view().into_dyn()),
        }
    }

    /// Mutable flat data of one kind (`None` for an absent bias).
    pub fn get_mut(&mut self, kind: ParamKind) -> Option<&mut [F]> {
        match kind {
            ParamKind::WeightIh => self.weight_ih.as_slice_mut(),
            ParamKind::WeightHh => self.weight_hh.as_slice_mut(),
            ParamKind::BiasIh => self.bias_ih.as_mut().and_then(|b| b.as_slice_mut()),
            ParamKind::BiasHh => self.bias_hh.as_mut().and_then(|b| b.as_slice_mut()),
        }
    }
}

/// All parameters of a GRU (or their gradients: the same shapes and names).
#[derive(Clone, Debug, PartialEq)]
pub struct GruParams<F> {
    config: GruConfig,
    /// Indexed by `layer * D + direction`.
    dirs: Vec<DirParams<F>>,
}

impl<F: Real> GruParams<F> {
    /// All zeros (the start of a gradient accumulation).
    pub fn zeros(config: &GruConfig) -> Result<Self> {
        config.validate()?;
        let count = config.param_count()?;
        crate::memory::check_host(
            &format!("the parameters ({count} values)"),
            crate::memory::bytes_of(count, std::mem::size_of::<F>()),
        )?;
        let d = config.num_directions();
        let dirs = (0..config.num_layers * d)
            .map(|k| DirParams::zeros(config, k / d))
            .collect();
        Ok(GruParams {
            config: config.clone(),
            dirs,
        })
    }

    /// PyTorch's default initialisation: every parameter drawn from
    /// `U(-1/sqrt(H), 1/sqrt(H))`, in `state_dict` order, from a seeded ChaCha8
    /// generator. (The values differ from PyTorch's for the same seed: the
    /// generators differ. The distribution is the same.)
    pub fn init(config: &GruConfig, seed: u64) -> Result<Self> {
        let mut p = Self::zeros(config)?;
        let k = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for spec in config.param_specs() {
            let dst = p.dirs[spec.layer * config.num_directions() + spec.direction]
                .get_mut(spec.kind)
                .expect("param_specs lists only present tensors");
            for v in dst.iter_mut() {
                *v = F::of(rng.random_range(-k..k));
            }
        }
        Ok(p)
    }

    /// The configuration these parameters belong to.
    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    /// The same values for a GPU model that stores them in `precision`
    /// (the configuration's [`Precision`](crate::Precision); the CPU
    /// reference ignores it).
    pub fn with_precision(mut self, precision: crate::config::Precision) -> Self {
        self.config.precision = precision;
        self
    }

    /// Layer `layer`, direction `direction` (0 forward, 1 reverse), or
    /// [`GruError::OutOfRange`] where there is no such layer or direction.
    pub fn dir(&self, layer: usize, direction: usize) -> Result<&DirParams<F>> {
        let k = self.index(layer, direction)?;
        Ok(&self.dirs[k])
    }

    /// Mutable layer-direction. Its fields are public: a change of shape is
    /// found by [`check`](Self::check), which every model runs before use.
    pub fn dir_mut(&mut self, layer: usize, direction: usize) -> Result<&mut DirParams<F>> {
        let k = self.index(layer, direction)?;
        Ok(&mut self.dirs[k])
    }

    fn index(&self, layer: usize, direction: usize) -> Result<usize> {
        let d = self.config.num_directions();
        if layer >= self.config.num_layers {
            return Err(GruError::OutOfRange {
                what: "layer".into(),
                index: layer,
                len: self.config.num_layers,
            });
        }
        if direction >= d {
            return Err(GruError::OutOfRange {
                what: "direction".into(),
                index: direction,
                len: d,
            });
        }
        Ok(layer * d + direction)
    }

    /// Checks every tensor against the configuration: shapes, and biases
    /// present exactly where the configuration has them. (The fields of
    /// [`DirParams`] are public, so a tensor can be replaced by one of
    /// another shape through [`dir_mut`](Self::dir_mut).)
    pub fn check(&self) -> Result<()> {
        let d = self.config.num_directions();
        if self.dirs.len() != self.config.num_layers * d {
            return Err(GruError::InvalidConfig(format!(
                "{} layer-directions for a configuration of {} layers and {} directions",
                self.dirs.len(),
                self.config.num_layers,
                d
            )));
        }
        for (k, p) in self.dirs.iter().enumerate() {
            let (layer, direction) = (k / d, k % d);
            for kind in ParamKind::ALL {
                let name = self.config.param_name_of(kind, layer, direction);
                let expected = self.config.param_shape(kind, layer);
                match p.get(kind) {
                    Some(t) if kind.is_bias() && !self.config.bias => {
                        return Err(GruError::UnexpectedTensor {
                            name,
                            shape: t.shape().into(),
                            file: None,
                        })
                    }
                    Some(t) if t.shape() != expected.as_slice() => {
                        return Err(GruError::shape(name, expected, t.shape().to_vec()))
                    }
                    None if self.config.bias || !kind.is_bias() => {
                        return Err(GruError::MissingTensor {
                            name,
                            expected: expected.into(),
                            file: None,
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// All layer-directions, indexed by `layer * D + direction`.
    pub fn dirs(&self) -> &[DirParams<F>] {
        &self.dirs
    }

    /// Every parameter with its spec, in `state_dict` order.
    pub fn named(&self) -> Vec<(ParamSpec, ArrayViewD<'_, F>)> {
        self.config
            .param_specs()
            .into_iter()
            .map(|spec| {
                let v = self.dirs[spec.layer * self.config.num_directions() + spec.direction]
                    .get(spec.kind)
                    .expect("param_specs lists only present tensors");
                (spec, v)
            })
            .collect()
    }

    /// One parameter by its `state_dict` name.
    pub fn get(&self, name: &str) -> Option<ArrayViewD<'_, F>> {
        self.named()
            .into_iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, v)| v)
    }

    /// The same parameters in another float type.
    pub fn cast<G: Real>(&self) -> GruParams<G> {
        let c = |a: &Array2<F>| a.mapv(|v| G::of(v.f64()));
        let c1 = |a: &Option<Array1<F>>| a.as_ref().map(|a| a.mapv(|v| G::of(v.f64())));
        GruParams {
            config: self.config.clone(),
            dirs: self
                .dirs
                .iter()
                .map(|p| DirParams {
                    weight_ih: c(&p.weight_ih),
                    weight_hh: c(&p.weight_hh),
                    bias_ih: c1(&p.bias_ih),
                    bias_hh: c1(&p.bias_hh),
                })
                .collect(),
        }
    }

    /// Builds parameters from named tensors, checking that the names and
    /// shapes are exactly those of `config`: no tensor missing, none extra.
    pub fn from_named(config: &GruConfig, tensors: &BTreeMap<String, ArrayD<F>>) -> Result<Self> {
        let mut p = Self::zeros(config)?;
        let specs = config.param_specs();
        for (name, t) in tensors {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(GruError::UnexpectedTensor {
                    name: name.clone(),
                    shape: t.shape().into(),
                    file: None,
                });
            }
        }
        for spec in &specs {
            let t = tensors
                .get(&spec.name)
                .ok_or_else(|| GruError::MissingTensor {
                    name: spec.name.clone(),
                    expected: Shape(spec.shape.clone()),
                    file: None,
                })?;
            if t.shape() != spec.shape.as_slice() {
                return Err(GruError::shape(
                    &spec.name,
                    spec.shape.clone(),
                    t.shape().to_vec(),
                ));
            }
            let dst = p.dirs[spec.layer * config.num_directions() + spec.direction]
                .get_mut(spec.kind)
                .expect("param_specs lists only present tensors");
            for (d, s) in dst.iter_mut().zip(t.iter()) {
                *d = *s;
            }
        }
        Ok(p)
    }

    /// Loads a safetensors file written from a PyTorch `nn.GRU`'s `state_dict`
    /// (float32 or float64 tensors), checking it against `config`.
    pub fn load_safetensors(path: impl AsRef<Path>, config: &GruConfig) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::files::read_safetensors(path)?;
        Self::from_safetensors_bytes(&bytes, config, &crate::error::shown_path(path))
    }

    /// Like [`load_safetensors`](Self::load_safetensors), from bytes in memory;
    /// `origin` names them in errors.
    ///
    /// Where the file's metadata holds the configuration (as
    /// [`to_safetensors_bytes`](Self::to_safetensors_bytes) writes it), every
    /// key it holds must agree with `config`: a reset-before model is never
    /// read as a reset-after one.
    pub fn from_safetensors_bytes(bytes: &[u8], config: &GruConfig, origin: &str) -> Result<Self> {
        config.validate()?;
        let file = SafeFile::parse(bytes, origin)?;
        let ours = config_metadata(config);
        for (key, want) in &ours {
            if let Some(have) = file.metadata().get(*key) {
                if have != want {
                    return Err(GruError::InvalidConfig(format!(
                        "{origin}: metadata `{key}` is `{}`, the configuration asks for `{want}`",
                        crate::error::untrusted(have)
                    )));
                }
            }
        }
        let specs = config.param_specs();
        // Every name and shape is checked before any tensor is read.
        for name in file.names() {
            let shape = file.shape(&name)?;
            match specs.iter().find(|s| s.name == name) {
                None => {
                    return Err(GruError::UnexpectedTensor {
                        name,
                        shape: shape.into(),
                        file: Some(origin.to_string()),
                    })
                }
                Some(spec) if spec.shape != shape => {
                    return Err(GruError::shape(name, spec.shape.clone(), shape).in_file(origin))
                }
                Some(_) => {}
            }
        }
        let mut tensors = BTreeMap::new();
        for spec in &specs {
            tensors.insert(
                spec.name.clone(),
                file.tensor_shaped::<F>(&spec.name, &spec.shape)?,
            );
        }
        Self::from_named(config, &tensors).map_err(|e| e.in_file(origin))
    }

    /// The configuration stored in the metadata of a parameter file written
    /// by [`save_safetensors`](Self::save_safetensors) (or `gru-wgpu
    /// import-onnx`), for [`load_safetensors`](Self::load_safetensors).
    pub fn config_in_safetensors(path: impl AsRef<Path>) -> Result<GruConfig> {
        let path = path.as_ref();
        let origin = crate::error::shown_path(path);
        let bytes = crate::files::read_safetensors(path)?;
        let file = SafeFile::parse(&bytes, &origin)?;
        let m = file.metadata();
        let get = |key: &str| {
            m.get(key)
                .map(String::as_str)
                .ok_or_else(|| GruError::Format {
                    path: origin.clone(),
                    message: format!(
                        "metadata `{key}` is missing: the file does not hold its configuration"
                    ),
                })
        };
        let bad = |key: &str, v: &str| GruError::Format {
            path: origin.clone(),
            message: format!(
                "metadata `{key}` is `{}`, not a valid value",
                crate::error::untrusted(v)
            ),
        };
        let num = |key: &str| -> Result<usize> {
            let v = get(key)?;
            v.parse().map_err(|_| bad(key, v))
        };
        let flag = |key: &str| -> Result<bool> {
            match get(key)? {
                "true" => Ok(true),
                "false" => Ok(false),
                v => Err(bad(key, v)),
            }
        };
        let form = get("reset_form")?;
        let direction = crate::config::Direction::of_metadata(
            flag("bidirectional")?,
            m.get("direction").map(String::as_str),
        )
        .map_err(|message| GruError::Format {
            path: origin.clone(),
            message,
        })?;
        let config = GruConfig::new(num("input_size")?, num("hidden_size")?)
            .layers(num("num_layers")?)
            .direction(direction)
            .batch_first(flag("batch_first")?)
            .bias(flag("bias")?)
            .reset_before(match crate::config::ResetForm::parse(form) {
                Some(f) => f == crate::config::ResetForm::Before,
                None => return Err(bad("reset_form", form)),
            });
        config.validate()?;
        Ok(config)
    }

    /// The parameters as safetensors bytes under PyTorch's names, in this
    /// type's dtype (`F32` or `F64`), with the configuration in the metadata
    /// (`input_size`, `hidden_size`, `num_layers`, `bidirectional`,
    /// `direction`, `batch_first`, `bias`, `reset_form`).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let named: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .named()
            .into_iter()
            .map(|(spec, v)| {
                let mut bytes = Vec::with_capacity(v.len() * std::mem::size_of::<F>());
                for x in v.iter() {
                    x.put_le(&mut bytes);
                }
                (spec.name, spec.shape, bytes)
            })
            .collect();
        let views = named
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(F::DTYPE, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| GruError::SafeTensors {
                        path: "<memory>".into(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: HashMap<String, String> = config_metadata(&self.config)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        safetensors::serialize(views, Some(meta)).map_err(|e| GruError::SafeTensors {
            path: "<memory>".into(),
            message: e.to_string(),
        })
    }

    /// Writes the parameters to a safetensors file.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors_bytes()?;
        std::fs::write(path, bytes).map_err(|e| GruError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Element-wise `self += other`; both must have the same configuration
    /// and shapes.
    pub fn add_assign(&mut self, other: &GruParams<F>) -> Result<()> {
        if self.config != other.config {
            return Err(GruError::InvalidConfig(format!(
                "cannot add parameters of {:?} to parameters of {:?}",
                other.config, self.config
            )));
        }
        self.check()?;
        other.check()?;
        for (a, b) in self.dirs.iter_mut().zip(&other.dirs) {
            a.weight_ih += &b.weight_ih;
            a.weight_hh += &b.weight_hh;
            if let (Some(x), Some(y)) = (a.bias_ih.as_mut(), b.bias_ih.as_ref()) {
                *x += y;
            }
            if let (Some(x), Some(y)) = (a.bias_hh.as_mut(), b.bias_hh.as_ref()) {
                *x += y;
            }
        }
        Ok(())
    }
}

/// The configuration as the metadata of a parameter file.
fn config_metadata(c: &GruConfig) -> Vec<(&'static str, String)> {
    vec![
        ("input_size", c.input_size.to_string()),
        ("hidden_size", c.hidden_size.to_string()),
        ("num_layers", c.num_layers.to_string()),
        ("bidirectional", c.is_bidirectional().to_string()),
        ("direction", c.direction.name().to_string()),
        ("batch_first", c.batch_first.to_string()),
        ("bias", c.bias.to_string()),
        ("reset_form", c.reset_form.name().to_string()),
    ]
}

/// A parsed safetensors file: its tensors, read as floats on demand, and its metadata.
pub(crate) struct SafeFile<'a> {
    st: safetensors::SafeTensors<'a>,
    metadata: HashMap<String, String>,
    origin: String,
}

impl<'a> SafeFile<'a> {
    pub(crate) fn parse(bytes: &'a [u8], origin: &str) -> Result<Self> {
        // Its messages quote tensor names from the file.
        let err = |e: safetensors::SafeTensorError| GruError::SafeTensors {
            path: origin.to_string(),
            message: crate::error::untrusted(&e.to_string()),
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(err)?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(err)?;
        Ok(SafeFile {
            st,
            metadata: meta.metadata().clone().unwrap_or_default(),
            origin: origin.to_string(),
        })
    }

    pub(crate) fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st.names().into_iter().map(String::from).collect();
        n.sort();
        n
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.st.names().contains(&name)
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.st.tensor(name).map_err(|e| GruError::SafeTensors {
            path: self.origin.clone(),
            message: e.to_string(),
        })
    }

    /// The shape of a tensor, without reading it.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// The dtype of a tensor, without reading it.
    pub(crate) fn dtype(&self, name: &str) -> Result<safetensors::Dtype> {
        Ok(self.view(name)?.dtype())
    }

    /// Reads a float32 or float64 tensor, converted to `F`.
    pub(crate) fn tensor<F: Real>(&self, name: &str) -> Result<ArrayD<F>> {
        let view = self.view(name)?;
        let data = view.data();
        let values: Vec<F> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| F::of(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
                .collect(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| F::of(f64::from_le_bytes(c.try_into().expect("chunk of 8"))))
                .collect(),
            other => {
                return Err(GruError::DType {
                    name: name.to_string(),
                    expected: "F32 or F64",
                    actual: format!("{other:?}"),
                    file: Some(self.origin.clone()),
                })
            }
        };
        ArrayD::from_shape_vec(IxDyn(view.shape()), values).map_err(|e| GruError::SafeTensors {
            path: self.origin.clone(),
            message: format!("tensor `{name}`: {e}"),
        })
    }

    /// Reads an integer tensor that must have `dtype` (`I64`, `I32` or `U8`)
    /// and `shape`, as `i64` values.
    pub(crate) fn int_tensor(
        &self,
        name: &str,
        dtype: safetensors::Dtype,
        expected: &'static str,
        shape: &[usize],
    ) -> Result<Vec<i64>> {
        if !self.has(name) {
            return Err(GruError::MissingTensor {
                name: name.to_string(),
                expected: shape.into(),
                file: Some(self.origin.clone()),
            });
        }
        let view = self.view(name)?;
        if view.dtype() != dtype {
            return Err(GruError::DType {
                name: name.to_string(),
                expected,
                actual: format!("{:?}", view.dtype()),
                file: Some(self.origin.clone()),
            });
        }
        if view.shape() != shape {
            return Err(
                GruError::shape(name, shape.to_vec(), view.shape().to_vec()).in_file(&self.origin)
            );
        }
        let data = view.data();
        Ok(match dtype {
            safetensors::Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
            safetensors::Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("chunk of 4")) as i64)
                .collect(),
            safetensors::Dtype::U8 => data.iter().map(|&v| v as i64).collect(),
            other => unreachable!("int_tensor called with {other:?}"),
        })
    }

    /// Reads a tensor and checks its shape.
    pub(crate) fn tensor_shaped<F: Real>(&self, name: &str, shape: &[usize]) -> Result<ArrayD<F>> {
        if !self.has(name) {
            return Err(GruError::MissingTensor {
                name: name.to_string(),
                expected: shape.into(),
                file: Some(self.origin.clone()),
            });
        }
        let actual = self.shape(name)?;
        if actual != shape {
            return Err(GruError::shape(name, shape.to_vec(), actual).in_file(&self.origin));
        }
        self.tensor::<F>(name)
    }

    /// Reads a tensor that must have `dtype` and `shape` (a format that
    /// prescribes the dtype of each tensor).
    pub(crate) fn tensor_typed<F: Real>(
        &self,
        name: &str,
        dtype: safetensors::Dtype,
        shape: &[usize],
    ) -> Result<ArrayD<F>> {
        if self.has(name) {
            let actual = self.dtype(name)?;
            if actual != dtype {
                return Err(GruError::DType {
                    name: name.to_string(),
                    expected: if dtype == safetensors::Dtype::F64 {
                        "F64"
                    } else {
                        "F32"
                    },
                    actual: format!("{actual:?}"),
                    file: Some(self.origin.clone()),
                });
            }
        }
        self.tensor_shaped(name, shape)
    }
}
