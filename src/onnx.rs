//! ONNX models: the `GRU` nodes of an `.onnx` file as parameters in
//! PyTorch's names and order (one node, or a stack of them as
//! `torch.onnx.export` writes a `num_layers > 1` GRU: [`stack`]), and the
//! reference cases of formats `onnx-gru-v1` (one node, outputs computed by
//! onnxruntime: [`OnnxCase`]) and `onnx-model-v1` (a whole model:
//! [`model_case`]).
//!
//! The protobuf is read with `prost`, from the subset of `onnx.proto`'s
//! messages defined here (unknown fields are skipped, as protobuf does).
//!
//! ONNX stacks the gate blocks **z, r, h** and `B = [Wb_z, Wb_r, Wb_h, Rb_z,
//! Rb_r, Rb_h]`; PyTorch stacks r, z, n with `bias_ih = [b_ir, b_iz, b_in]`,
//! `bias_hh = [b_hr, b_hz, b_hn]`. `linear_before_reset = 1` is PyTorch's
//! reset-after form, `0` (the ONNX default) the reset-before form; `layout =
//! 1` is `batch_first` (and so are the exporter's Transposes of a layout 0
//! graph's input and output); `direction = bidirectional` is
//! `bidirectional`; a single `reverse` direction is a reverse GRU
//! ([`crate::Direction::Reverse`], [`config_direction`]). A `clip` and
//! activations other than the default (`Sigmoid`, `Tanh`). Weights may be in
//! external data files beside the model ([`external`]).

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{s, Array2, Array3, ArrayD, Axis, IxDyn};

use crate::config::GruConfig;
use crate::error::{shown_path, untrusted, untrusted_bytes, GruError, Result};
use crate::params::{GruParams, SafeFile};
use crate::real::{max_abs_error, rel_error, Real};
use crate::reference::TensorCheck;

pub mod external;
pub(crate) mod graph;
pub mod model_case;
pub mod stack;
pub mod wire;

pub use model_case::{is_onnx_model_case, OnnxModelCase};
pub use stack::OnnxStack;

/// The subset of `onnx.proto` that a GRU node needs.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        /// The tool that wrote the model (`pytorch`).
        #[prost(string, tag = "2")]
        pub producer_name: String,
        /// Its version (`2.15.0`).
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        /// The graph's inputs (initializers may be listed here too).
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        /// The graph's outputs.
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
        /// Declared types and shapes of intermediate values.
        #[prost(message, repeated, tag = "13")]
        pub value_info: Vec<ValueInfoProto>,
    }

    /// A named value's declared type and shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// A value's type: only tensors are read (other kinds are skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    /// `TypeProto.Tensor`: an element type and a shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// A tensor's shape, one entry per dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`: a size, or a name for a size not fixed.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, tag = "2")]
        pub dim_param: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        /// A tensor (`Constant`'s `value`).
        #[prost(message, optional, tag = "5")]
        pub t: Option<TensorProto>,
        #[prost(float, repeated, tag = "7")]
        pub floats: Vec<f32>,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        #[prost(bytes = "vec", repeated, tag = "9")]
        pub strings: Vec<Vec<u8>>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// INT32 (and smaller integer) values, where not in `raw_data`.
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        /// INT64 values, where not in `raw_data`.
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
        #[prost(message, repeated, tag = "13")]
        pub external_data: Vec<StringStringEntryProto>,
        #[prost(int32, tag = "14")]
        pub data_location: i32,
    }

    /// `TensorProto.DataType.FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `TensorProto.DataType.INT32`.
    pub const INT32: i32 = 6;
    /// `TensorProto.DataType.INT64`.
    pub const INT64: i32 = 7;
    /// `TensorProto.DataLocation.EXTERNAL`.
    pub const EXTERNAL: i32 = 1;
}

/// The `direction` attribute of an ONNX recurrent node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

impl Direction {
    /// `forward`, `reverse` or `bidirectional`: the configuration's
    /// direction's name ([`crate::config::Direction::name`]).
    pub fn name(self) -> &'static str {
        self.config().name()
    }

    /// The configuration's direction of the same name.
    fn config(self) -> crate::config::Direction {
        match self {
            Direction::Forward => crate::config::Direction::Forward,
            Direction::Reverse => crate::config::Direction::Reverse,
            Direction::Bidirectional => crate::config::Direction::Bidirectional,
        }
    }

    /// The number of directions: 2 for `bidirectional`, else 1.
    pub fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// One ONNX `GRU` node with its weights, in ONNX's layout (gates z, r, h).
#[derive(Clone, Debug)]
pub struct OnnxGru {
    /// The node's name (may be empty).
    pub name: String,
    pub direction: Direction,
    pub linear_before_reset: bool,
    /// 0: `(T, B, I)`; 1: `(B, T, I)`.
    pub layout: i64,
    pub hidden_size: usize,
    pub input_size: usize,
    /// `(D, 3H, I)`
    pub w: Array3<f32>,
    /// `(D, 3H, H)`
    pub r: Array3<f32>,
    /// `(D, 6H)`, where the node has a `B` input.
    pub b: Option<Array2<f32>>,
}

/// The forward of an imported model's parameters on the CPU reference in
/// `F`, as f64: `(output, h_n)`.
pub(crate) fn cpu_forward<F: Real>(
    params: &GruParams<f32>,
    x: &Array3<f32>,
    h0: Option<&Array3<f32>>,
    lengths: Option<Vec<usize>>,
) -> Result<(Array3<f64>, Array3<f64>)> {
    let c = |a: &Array3<f32>| a.mapv(|v| F::of(v as f64));
    let mut gru = crate::cpu::Gru::new(params.cast::<F>());
    let opts = crate::cpu::SeqOptions::new().lengths(lengths);
    let h0 = h0.map(c);
    let (out, h_n) = gru.forward_with(c(x).view(), h0.as_ref().map(|h| h.view()), &opts)?;
    Ok((out.mapv(|v| v.f64()), h_n.mapv(|v| v.f64())))
}

/// The forward of an imported model's parameters on the GPU in
/// `precision`, `plan` forced (`None`: the automatic plan), as f64.
pub(crate) fn gpu_forward(
    ctx: &crate::gpu::GpuContext,
    params: &GruParams<f32>,
    (precision, plan): (crate::config::Precision, Option<crate::gpu::Plan>),
    x: &Array3<f32>,
    h0: Option<&Array3<f32>>,
    lengths: Option<Vec<usize>>,
) -> Result<(Array3<f64>, Array3<f64>)> {
    let model = crate::gpu::GpuGru::new(ctx, &params.clone().with_precision(precision))?;
    model.set_plan(plan);
    let opts = crate::gpu::ForwardOptions::default()
        .h0(h0.map(|h| h.view()))
        .lengths(lengths);
    let f = model.forward(x.view(), opts)?;
    Ok((f.output.mapv(|v| v as f64), f.h_n.mapv(|v| v as f64)))
}

/// The metadata of a case file, read with the file's name in every error.
pub(crate) struct CaseMeta<'a> {
    pub m: &'a std::collections::HashMap<String, String>,
    pub origin: &'a str,
}

impl<'a> CaseMeta<'a> {
    /// The value of `key`, which must be there.
    pub(crate) fn get(&self, key: &str) -> Result<&'a str> {
        self.m
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| err(self.origin, format!("metadata `{key}` is missing")))
    }

    /// The value of `key` as a non-negative integer.
    pub(crate) fn num(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        v.trim().parse().map_err(|_| {
            err(
                self.origin,
                format!(
                    "metadata `{key}` is `{}`, not a non-negative integer",
                    untrusted(v)
                ),
            )
        })
    }

    /// The value of `key` as `true` or `false`.
    pub(crate) fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(err(
                self.origin,
                format!("metadata `{key}` is `{}`, not true or false", untrusted(v)),
            )),
        }
    }

    /// Refuses a file whose `format` is not `format`, or whose metadata
    /// holds a key not in `known`.
    pub(crate) fn check(&self, format: &str, known: &[&str]) -> Result<()> {
        if self.get("format")? != format {
            return Err(err(
                self.origin,
                format!(
                    "metadata `format` is `{}`, expected `{format}`",
                    untrusted(self.get("format")?)
                ),
            ));
        }
        let mut unknown: Vec<&String> = self
            .m
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(err(
                self.origin,
                format!(
                    "metadata `{}` = `{}` is not supported by this reader; the file is refused",
                    untrusted(k),
                    untrusted(&self.m[*k])
                ),
            ));
        }
        Ok(())
    }

    /// The metadata `seq_len` and `batch`, both at least 1.
    pub(crate) fn seq_len_batch(&self) -> Result<(usize, usize)> {
        let (seq_len, batch) = (self.num("seq_len")?, self.num("batch")?);
        if seq_len == 0 || batch == 0 {
            return Err(err(
                self.origin,
                format!("seq_len {seq_len} and batch {batch} must both be at least 1"),
            ));
        }
        Ok((seq_len, batch))
    }

    /// The model file that `model` names, in the folder of the case `path`
    /// (a plain file name, nothing else).
    pub(crate) fn model_path(&self, path: &Path) -> Result<(std::path::PathBuf, String)> {
        let model = self.get("model")?;
        if model.is_empty()
            || model.contains('/')
            || model.contains('\\')
            || model == "."
            || model == ".."
        {
            return Err(err(
                self.origin,
                format!(
                    "metadata `model` is `{}`; it must be a file name in the case's folder",
                    untrusted(model)
                ),
            ));
        }
        let at = path.parent().unwrap_or(Path::new(".")).join(model);
        Ok((at, untrusted(model)))
    }
}

/// Reads the case file `path` of `format` (its metadata keys all in
/// `known`) and makes what `read` makes of it.
pub(crate) fn read_case<T>(
    path: &Path,
    (format, known): (&str, &[&str]),
    read: impl FnOnce(&SafeFile, &CaseMeta) -> Result<T>,
) -> Result<T> {
    let origin = shown_path(path);
    let bytes = crate::files::read_safetensors(path)?;
    let file = SafeFile::parse(&bytes, &origin)?;
    let meta = CaseMeta {
        m: file.metadata(),
        origin: &origin,
    };
    meta.check(format, known)?;
    read(&file, &meta)
}

/// Refuses a case file holding a tensor not in `known`.
pub(crate) fn refuse_unknown_tensors(file: &SafeFile, known: &[&str], origin: &str) -> Result<()> {
    if let Some(name) = file
        .names()
        .into_iter()
        .find(|n| !known.contains(&n.as_str()))
    {
        return Err(GruError::UnexpectedTensor {
            shape: file.shape(&name)?.into(),
            name,
            file: Some(origin.to_string()),
        });
    }
    Ok(())
}

/// A case file's int32 lengths tensor `name` `(batch)`, each in
/// `1..=seq_len`.
pub(crate) fn read_lengths(
    file: &SafeFile,
    name: &str,
    (seq_len, batch): (usize, usize),
    origin: &str,
) -> Result<Vec<usize>> {
    let v = file.int_tensor(name, safetensors::Dtype::I32, "I32", &[batch])?;
    if let Some((k, l)) = v
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 1 || l > seq_len as i64)
    {
        return Err(err(
            origin,
            format!("{name}[{k}] is {l}; every length must be in 1..={seq_len} (seq_len)"),
        ));
    }
    Ok(v.into_iter().map(|l| l as usize).collect())
}

pub(crate) fn err(origin: &str, message: impl Into<String>) -> GruError {
    GruError::Format {
        path: origin.to_string(),
        message: message.into(),
    }
}

/// The most items of a list from a model that a message quotes.
const LIST_MAX: usize = 4;

/// Items of a list from a model, for a message: at most [`LIST_MAX`] of
/// them (each already through [`untrusted`]), then how many more there are.
pub(crate) fn quoted_list(
    items: impl ExactSizeIterator<Item = String>,
    open: &str,
    close: &str,
) -> String {
    format!("{open}{}{close}", joined_list(items, ", "))
}

/// [`quoted_list`]'s items, joined by `sep`, without brackets.
pub(crate) fn joined_list(items: impl ExactSizeIterator<Item = String>, sep: &str) -> String {
    let total = items.len();
    let mut shown: Vec<String> = items.take(LIST_MAX).collect();
    if total > LIST_MAX {
        shown.push(format!("… ({} more)", total - LIST_MAX));
    }
    shown.join(sep)
}

/// The default activations of a GRU: `Sigmoid`, `Tanh` per direction.
fn default_activations(list: &[Vec<u8>], directions: usize) -> bool {
    list.len() == 2 * directions
        && list.iter().enumerate().all(|(i, a)| {
            let want = if i % 2 == 0 { "sigmoid" } else { "tanh" };
            String::from_utf8_lossy(a).eq_ignore_ascii_case(want)
        })
}

/// The configuration's direction of an ONNX GRU node: `forward`,
/// `reverse` (a single reverse-direction layer, as Keras' `go_backwards`
/// and tf2onnx write it: [`crate::Direction::Reverse`], its parameters
/// under PyTorch's `_reverse` names) or `bidirectional`. Every import, a
/// single node's ([`OnnxGru::config`]) and a stack's
/// ([`OnnxStack::config`]), decides through it.
pub fn config_direction(gru: &OnnxGru) -> crate::config::Direction {
    gru.direction.config()
}

impl OnnxGru {
    /// Reads the `GRU` node of an `.onnx` file: the only one, or the one named `node`.
    ///
    /// Only a regular file of at most [`crate::files::ONNX_MAX`] bytes is
    /// read; weights in external data files are read from the model's
    /// folder ([`external`]). A model whose GRU nodes make a stack of
    /// several layers is refused here (name one node, or read it with
    /// [`OnnxStack::load`]).
    pub fn load(path: impl AsRef<Path>, node: Option<&str>) -> Result<Self> {
        OnnxStack::load(path, node)?.into_single()
    }

    /// [`load`](Self::load) from bytes in memory; `origin` names them in
    /// errors. Weights in external data files are refused: there is no
    /// folder to read them from.
    ///
    /// What decoding would allocate is counted from the wire format first
    /// ([`wire::check`]): a model of millions of empty nodes is refused
    /// before anything is decoded.
    pub fn from_bytes(bytes: &[u8], origin: &str, node: Option<&str>) -> Result<Self> {
        OnnxStack::from_bytes(bytes, origin, node)?.into_single()
    }

    /// Reads GRU node `index` of `graph`: its attributes, checked, and its
    /// `W`, `R`, `B` initializers (external data included).
    pub(crate) fn from_node(graph: &graph::Graph<'_>, index: usize) -> Result<Self> {
        let origin = graph.origin;
        let n = graph.node(index);
        let label = format!("GRU node `{}`", untrusted(&n.name));
        let mut direction = Direction::Forward;
        let mut linear_before_reset = false;
        let mut layout = 0i64;
        let mut hidden_attr = None;
        let mut activations = None;
        for a in &n.attribute {
            match a.name.as_str() {
                "direction" => {
                    direction = match &a.s[..] {
                        b"forward" => Direction::Forward,
                        b"reverse" => Direction::Reverse,
                        b"bidirectional" => Direction::Bidirectional,
                        other => {
                            return Err(err(
                                origin,
                                format!(
                                    "{label}: direction `{}` is not an ONNX direction",
                                    untrusted_bytes(other)
                                ),
                            ))
                        }
                    }
                }
                "linear_before_reset" => match a.i {
                    0 => linear_before_reset = false,
                    1 => linear_before_reset = true,
                    v => {
                        return Err(err(
                            origin,
                            format!("{label}: linear_before_reset is {v}, expected 0 or 1"),
                        ))
                    }
                },
                "layout" => match a.i {
                    0 | 1 => layout = a.i,
                    v => {
                        return Err(err(
                            origin,
                            format!("{label}: layout is {v}, expected 0 or 1"),
                        ))
                    }
                },
                "hidden_size" => hidden_attr = Some(a.i),
                "activations" => activations = Some(&a.strings),
                "clip" => {
                    return Err(err(
                        origin,
                        format!(
                            "{label}: the `clip` attribute ({}) is not supported (nn.GRU has no clipping)",
                            a.f
                        ),
                    ))
                }
                "activation_alpha" | "activation_beta" => {
                    return Err(err(
                        origin,
                        format!("{label}: the `{}` attribute is not supported", a.name),
                    ))
                }
                other => {
                    return Err(err(
                        origin,
                        format!("{label}: unknown attribute `{}`", untrusted(other)),
                    ))
                }
            }
        }
        let d = direction.count();
        if let Some(list) = activations {
            if !default_activations(list, d) {
                let names = quoted_list(
                    list.iter().map(|a| format!("\"{}\"", untrusted_bytes(a))),
                    "[",
                    "]",
                );
                return Err(err(
                    origin,
                    format!(
                        "{label}: activations {names} are not supported; only the default \
                         (Sigmoid, Tanh per direction) is"
                    ),
                ));
            }
        }
        let input = |i: usize| n.input.get(i).filter(|s| !s.is_empty());
        let init = |i: usize, what: &str| -> Result<Option<(Vec<usize>, Vec<f32>)>> {
            let Some(name) = input(i) else {
                return Ok(None);
            };
            let t = graph.initializer(name).ok_or_else(|| {
                err(
                    origin,
                    format!(
                        "{label}: its input {what} (`{}`) is not an initializer of the graph; \
                             only weights stored as initializers can be imported",
                        untrusted(name)
                    ),
                )
            })?;
            graph.floats(t).map(Some)
        };
        let (wd, wv) =
            init(1, "W")?.ok_or_else(|| err(origin, format!("{label} has no W input")))?;
        let (rd, rv) =
            init(2, "R")?.ok_or_else(|| err(origin, format!("{label} has no R input")))?;
        let b = init(3, "B")?;
        if wd.len() != 3 || rd.len() != 3 || wd[0] != d || rd[0] != d {
            return Err(err(
                origin,
                format!(
                    "{label}: W has shape {wd:?} and R {rd:?}; expected (D, 3H, I) and (D, 3H, H) with D = {d} ({})",
                    direction.name()
                ),
            ));
        }
        let h = rd[2];
        let h3 = h.checked_mul(3);
        if h == 0 || wd[2] == 0 || h3 != Some(rd[1]) || h3 != Some(wd[1]) {
            return Err(err(
                origin,
                format!("{label}: W has shape {wd:?} and R {rd:?}; expected (D, 3H, I) and (D, 3H, H) with sizes of at least 1"),
            ));
        }
        if let Some(hs) = hidden_attr {
            if hs != h as i64 {
                return Err(err(
                    origin,
                    format!("{label}: hidden_size is {hs} but R has shape {rd:?}"),
                ));
            }
        }
        let b = match b {
            None => None,
            Some((bd, bv)) => {
                if bd != [d, 2 * rd[1]] {
                    return Err(err(
                        origin,
                        format!("{label}: B has shape {bd:?}, expected [{d}, {}]", 6 * h),
                    ));
                }
                Some(Array2::from_shape_vec((d, 6 * h), bv).expect("shape checked"))
            }
        };
        Ok(OnnxGru {
            name: n.name.clone(),
            direction,
            linear_before_reset,
            layout,
            hidden_size: h,
            input_size: wd[2],
            w: Array3::from_shape_vec((d, 3 * h, wd[2]), wv).expect("shape checked"),
            r: Array3::from_shape_vec((d, 3 * h, h), rv).expect("shape checked"),
            b,
        })
    }

    /// The equivalent configuration: one layer of the node's direction
    /// ([`config_direction`]: `reverse` is [`crate::Direction::Reverse`]),
    /// `batch_first` for layout 1, biases where the node has `B`, the
    /// reset-before form for `linear_before_reset = 0`.
    pub fn config(&self) -> Result<GruConfig> {
        let c = GruConfig::new(self.input_size, self.hidden_size)
            .direction(config_direction(self))
            .batch_first(self.layout == 1)
            .bias(self.b.is_some())
            .reset_before(!self.linear_before_reset);
        c.validate()?;
        Ok(c)
    }

    /// The parameters in PyTorch's names and order (gates r, z, n).
    pub fn params(&self) -> Result<GruParams<f32>> {
        let config = self.config()?;
        let mut named = BTreeMap::new();
        self.insert_named(0, &mut named);
        GruParams::from_named(&config, &named)
    }

    /// Adds this node's weights to `named` as layer `layer`'s, in
    /// PyTorch's names and order (gates z, r, h reordered to r, z, n, `B`
    /// split into `bias_ih` and `bias_hh`).
    pub(crate) fn insert_named(&self, layer: usize, named: &mut BTreeMap<String, ArrayD<f32>>) {
        let h = self.hidden_size;
        // z, r, h blocks -> r, z, n.
        let reorder = |a: ndarray::ArrayView2<f32>| -> ArrayD<f32> {
            ndarray::concatenate![
                Axis(0),
                a.slice(s![h..2 * h, ..]),
                a.slice(s![0..h, ..]),
                a.slice(s![2 * h..3 * h, ..])
            ]
            .into_dyn()
        };
        let reorder1 = |a: ndarray::ArrayView1<f32>| -> ArrayD<f32> {
            ndarray::concatenate![
                Axis(0),
                a.slice(s![h..2 * h]),
                a.slice(s![0..h]),
                a.slice(s![2 * h..3 * h])
            ]
            .into_dyn()
        };
        // A reverse node's one direction carries the `_reverse` names.
        let config = GruConfig::new(1, 1).direction(config_direction(self));
        for d in 0..self.direction.count() {
            use crate::config::ParamKind::*;
            let name = |k| config.param_name_of(k, layer, d);
            named.insert(name(WeightIh), reorder(self.w.index_axis(Axis(0), d)));
            named.insert(name(WeightHh), reorder(self.r.index_axis(Axis(0), d)));
            if let Some(b) = &self.b {
                let row = b.row(d);
                named.insert(name(BiasIh), reorder1(row.slice(s![0..3 * h])));
                named.insert(name(BiasHh), reorder1(row.slice(s![3 * h..6 * h])));
            }
        }
    }
}

/// The bound of the CPU reference against onnxruntime's float32 results.
pub const ONNX_BOUND: f64 = 1e-5;

/// The metadata keys of format `onnx-gru-v1`.
pub const ONNX_METADATA: [&str; 10] = [
    "format",
    "hidden_size",
    "input_size",
    "direction",
    "linear_before_reset",
    "layout",
    "seq_len",
    "batch",
    "model",
    "reference",
];

/// One onnxruntime reference case (format `onnx-gru-v1`): the inputs, the
/// model's GRU node, and what onnxruntime computed, in the operator's
/// shapes for the node's layout. A `layout = 1` node is imported as
/// `batch_first`; its file holds `X` `(B, T, I)`, `initial_h` `(B, D, H)`,
/// `Y` `(B, T, D, H)` and `Y_h` `(B, D, H)`, and the case runs nn.GRU's
/// `(D, B, H)` state from the transposed `initial_h` and compares its
/// results transposed back.
#[derive(Clone, Debug)]
pub struct OnnxCase {
    pub origin: String,
    /// The GRU node of the `.onnx` model the metadata names.
    pub gru: OnnxGru,
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    /// `(T, B, I)`, or `(B, T, I)` for layout 1.
    pub x: Array3<f32>,
    /// `(D, B, H)` for either layout (nn.GRU's `h0`; layout 1's `(B, D, H)`
    /// transposed).
    pub initial_h: Array3<f32>,
    /// Per-sequence lengths, each in `1..=T`.
    pub lengths: Vec<usize>,
    /// `(T, D, B, H)`, or `(B, T, D, H)` for layout 1.
    pub y: ArrayD<f64>,
    /// `(D, B, H)`, or `(B, D, H)` for layout 1.
    pub y_h: Array3<f64>,
}

/// What the CPU reference computes for an ONNX case, in ONNX's shapes for
/// the node's layout.
#[derive(Clone, Debug)]
pub struct OnnxResult {
    /// `(T, D, B, H)`, or `(B, T, D, H)` for layout 1.
    pub y: ArrayD<f64>,
    /// `(D, B, H)`, or `(B, D, H)` for layout 1.
    pub y_h: Array3<f64>,
}

impl OnnxCase {
    /// Reads a case and the model its metadata `model` names (in the same folder).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        read_case(path, ("onnx-gru-v1", &ONNX_METADATA), |file, meta| {
            Self::read(path, file, meta)
        })
    }

    /// [`load`](Self::load) on the file, its format and keys checked.
    fn read(path: &Path, file: &SafeFile, meta: &CaseMeta) -> Result<Self> {
        let origin = meta.origin;
        let (get, num) = (|k: &str| meta.get(k), |k: &str| meta.num(k));
        if num("layout")? > 1 {
            return Err(err(
                origin,
                format!(
                    "metadata `layout` is `{}`, expected 0 or 1",
                    untrusted(get("layout")?)
                ),
            ));
        }
        let (model_path, model) = meta.model_path(path)?;
        let gru = OnnxGru::load(&model_path, None)?;
        let config = gru.config()?;
        let (seq_len, batch) = meta.seq_len_batch()?;
        let (i, h) = (config.input_size, config.hidden_size);
        let d = config.num_directions();
        for (key, want) in [
            ("hidden_size", h.to_string()),
            ("input_size", i.to_string()),
            ("direction", gru.direction.name().to_string()),
            (
                "linear_before_reset",
                (gru.linear_before_reset as u8).to_string(),
            ),
            ("layout", gru.layout.to_string()),
        ] {
            let have = get(key)?;
            if have != want {
                return Err(err(
                    origin,
                    format!(
                        "metadata `{key}` is `{}` but the model {model} has `{want}`",
                        untrusted(have)
                    ),
                ));
            }
        }
        let known = ["X", "W", "R", "B", "sequence_lens", "initial_h", "Y", "Y_h"];
        refuse_unknown_tensors(file, &known, origin)?;
        let f32_ = |name: &str, shape: &[usize]| {
            file.tensor_typed::<f32>(name, safetensors::Dtype::F32, shape)
        };
        let three = |a: ArrayD<f32>| {
            a.into_dimensionality::<ndarray::Ix3>()
                .expect("shape checked")
        };
        // The weights of the file must be the model's.
        let w = three(f32_("W", &[d, 3 * h, i])?);
        let r = three(f32_("R", &[d, 3 * h, h])?);
        let same = |name: &str, a: &[f32], b: &[f32]| -> Result<()> {
            if a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len() {
                Ok(())
            } else {
                Err(err(
                    origin,
                    format!("tensor `{name}` differs from the initializer of the model {model}"),
                ))
            }
        };
        same(
            "W",
            &w.iter().copied().collect::<Vec<_>>(),
            &gru.w.iter().copied().collect::<Vec<_>>(),
        )?;
        same(
            "R",
            &r.iter().copied().collect::<Vec<_>>(),
            &gru.r.iter().copied().collect::<Vec<_>>(),
        )?;
        match (&gru.b, file.has("B")) {
            (Some(mb), true) => {
                let b = f32_("B", &[d, 6 * h])?;
                same(
                    "B",
                    &b.iter().copied().collect::<Vec<_>>(),
                    &mb.iter().copied().collect::<Vec<_>>(),
                )?;
            }
            (None, false) => {}
            (mb, _) => {
                return Err(err(
                    origin,
                    format!(
                        "the file {} a tensor `B` but the model {model} {} one",
                        if file.has("B") { "has" } else { "has no" },
                        if mb.is_some() { "has" } else { "has no" }
                    ),
                ))
            }
        }
        // Layout 1: batch first, and the state's batch before its direction.
        let bf = gru.layout == 1;
        let x_shape = if bf {
            [batch, seq_len, i]
        } else {
            [seq_len, batch, i]
        };
        let state_shape = if bf { [batch, d, h] } else { [d, batch, h] };
        let x = three(f32_("X", &x_shape)?);
        let initial_h = if file.has("initial_h") {
            let s = three(f32_("initial_h", &state_shape)?);
            if bf {
                s.permuted_axes([1, 0, 2]).as_standard_layout().to_owned()
            } else {
                s
            }
        } else {
            Array3::zeros((d, batch, h))
        };
        let lengths = if file.has("sequence_lens") {
            read_lengths(file, "sequence_lens", (seq_len, batch), origin)?
        } else {
            vec![seq_len; batch]
        };
        let y_shape = if bf {
            [batch, seq_len, d, h]
        } else {
            [seq_len, d, batch, h]
        };
        let y = file.tensor_typed::<f64>("Y", safetensors::Dtype::F32, &y_shape)?;
        let y_h = file
            .tensor_typed::<f64>("Y_h", safetensors::Dtype::F32, &state_shape)?
            .into_dimensionality::<ndarray::Ix3>()
            .expect("shape checked");
        Ok(OnnxCase {
            origin: origin.to_string(),
            gru,
            config,
            seq_len,
            batch,
            x,
            initial_h,
            lengths,
            y,
            y_h,
        })
    }

    /// Runs the CPU reference in `F`: the model's parameters, `X`,
    /// `initial_h` and `sequence_lens`, with `Y` and `Y_h` in ONNX's shapes.
    pub fn run_cpu<F: Real>(&self) -> Result<OnnxResult> {
        let params = self.gru.params()?;
        let lengths = Some(self.lengths.clone());
        let (out, h_n) = cpu_forward::<F>(&params, &self.x, Some(&self.initial_h), lengths)?;
        Ok(self.result(out, h_n))
    }

    /// Runs the GPU (f32): the model's parameters, `X`, `initial_h` and
    /// `sequence_lens`, with `Y` and `Y_h` in ONNX's shapes.
    pub fn run_gpu(&self, ctx: &crate::gpu::GpuContext) -> Result<OnnxResult> {
        self.run_gpu_in(ctx, crate::config::Precision::F32)
    }

    /// [`run_gpu`](Self::run_gpu) with the GPU model in `precision`.
    pub fn run_gpu_in(
        &self,
        ctx: &crate::gpu::GpuContext,
        precision: crate::config::Precision,
    ) -> Result<OnnxResult> {
        self.run_gpu_plan(ctx, precision, None)
    }

    /// [`run_gpu_in`](Self::run_gpu_in) with `plan` forced (`None`: the
    /// automatic plan).
    pub fn run_gpu_plan(
        &self,
        ctx: &crate::gpu::GpuContext,
        precision: crate::config::Precision,
        plan: Option<crate::gpu::Plan>,
    ) -> Result<OnnxResult> {
        let params = self.gru.params()?;
        let lengths = Some(self.lengths.clone());
        let (x, h0) = (&self.x, Some(&self.initial_h));
        let (out, h_n) = gpu_forward(ctx, &params, (precision, plan), x, h0, lengths)?;
        Ok(self.result(out, h_n))
    }

    /// `Y` `(T, D, B, H)` and `Y_h` from nn.GRU's `output` `(T, B, D·H)`
    /// and `h_n` `(D, B, H)`; for layout 1, `Y` `(B, T, D, H)` from
    /// `(B, T, D·H)` and `Y_h` `(B, D, H)`.
    fn result(&self, out: Array3<f64>, h_n: Array3<f64>) -> OnnxResult {
        let (t, b) = (self.seq_len, self.batch);
        let (d, h) = (self.config.num_directions(), self.config.hidden_size);
        if self.gru.layout == 1 {
            // (B, T, D*H) -> (B, T, D, H); (D, B, H) -> (B, D, H)
            let y = out
                .into_shape_with_order((b, t, d, h))
                .expect("the output is (B, T, D*H)")
                .into_dimensionality::<IxDyn>()
                .expect("any rank");
            let y_h = h_n.permuted_axes([1, 0, 2]).as_standard_layout().to_owned();
            return OnnxResult { y, y_h };
        }
        // (T, B, D*H) -> (T, D, B, H)
        let y = out
            .into_shape_with_order((t, b, d, h))
            .expect("the output is (T, B, D*H)")
            .permuted_axes([0, 2, 1, 3])
            .as_standard_layout()
            .to_owned()
            .into_dimensionality::<IxDyn>()
            .expect("any rank");
        OnnxResult { y, y_h: h_n }
    }

    /// Compares `Y` and `Y_h` against onnxruntime's, each against `bound`.
    pub fn compare(&self, ours: &OnnxResult, bound: f64) -> Vec<TensorCheck> {
        let check = |name: &str, a: &mut dyn Iterator<Item = f64>, b: Vec<f64>| {
            let a: Vec<f64> = a.collect();
            TensorCheck {
                name: name.to_string(),
                max_abs: max_abs_error(a.iter().copied(), b.iter()),
                rel: rel_error(a.iter().copied(), b.iter()),
                bound,
            }
        };
        vec![
            check(
                "Y",
                &mut ours.y.iter().copied(),
                self.y.iter().copied().collect(),
            ),
            check(
                "Y_h",
                &mut ours.y_h.iter().copied(),
                self.y_h.iter().copied().collect(),
            ),
        ]
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        format!(
            "ONNX GRU node `{}` I={} H={} direction={} linear_before_reset={} layout={} T={} B={} lengths={:?}",
            untrusted(&self.gru.name),
            self.config.input_size,
            self.config.hidden_size,
            self.gru.direction.name(),
            self.gru.linear_before_reset as u8,
            self.gru.layout,
            self.seq_len,
            self.batch,
            self.lengths
        )
    }
}

/// Whether a safetensors file says it is of format `onnx-gru-v1` (an
/// unreadable file is not; its reader reports why).
pub fn is_onnx_case(path: impl AsRef<Path>) -> bool {
    case_format(path).as_deref() == Some("onnx-gru-v1")
}

/// The metadata `format` of a safetensors file, where it can be read.
pub fn case_format(path: impl AsRef<Path>) -> Option<String> {
    let bytes = crate::files::read_safetensors(path.as_ref()).ok()?;
    let file = SafeFile::parse(&bytes, "").ok()?;
    file.metadata().get("format").cloned()
}
