//! A model's GRU nodes as one `nn.GRU`: a stack of layers, `batch_first`
//! from the exporter's Transposes, the initial state and the lengths, and
//! what was found on the way ([`ImportReport`]).
//!
//! `torch.onnx.export` writes a `num_layers = L` GRU as L `GRU` nodes (one
//! a layer), each reading the layer below's output `Y` `(T, D, B, H)` as
//! PyTorch's `(T, B, D·H)`:
//!
//! - the TorchScript exporter (`dynamo=False`): `Squeeze` of axis 1 for a
//!   unidirectional layer, `Transpose` (0, 2, 1, 3) then `Reshape` to a
//!   `Constant` `[0, 0, -1]` for a bidirectional one; the initial state a
//!   `Slice` of rows `l·D..(l+1)·D` of the `h0` input, or an `Expand` of a
//!   `Constant` of zeros without one;
//! - the default exporter (`dynamo=True`): `Transpose` (0, 2, 1, 3) then
//!   `Reshape` to an initializer `[T, B, D·H]` (static sizes) or to a shape
//!   computed from the tensor's own `Shape` (dynamic sizes), for either
//!   direction; the initial state a `Slice` of `h0`, or an initializer of
//!   zeros.
//!
//! A `batch_first` model is the same graph with a `Transpose` (1, 0, 2) of
//! the input before the first layer and of the output after the last.
//!
//! [`OnnxStack::from_bytes`] recognises these: every GRU node must read
//! the `Y` of the one below through `Squeeze` or `Transpose` + `Reshape`
//! (a Reshape's target is worked out from its constants and `Shape`, and
//! must be `(T, B, D·H)`: `0` or `-1` entries, the tensor's own sizes, or
//! sizes that the model's declared shapes show to be T and B), all but the
//! first, which reads the graph's input; all layers must agree (direction,
//! hidden size, `linear_before_reset`, bias, layout 0, lengths), and
//! their initial states must all be zeros or all be their rows of one
//! input. Anything else between GRU nodes is refused, naming what sits
//! there. `--node NAME` (`node`) imports one node alone.

use std::collections::BTreeMap;
use std::path::Path;

use super::graph::{refuse, Graph, Sym};
use super::{config_direction, err, joined_list, proto, quoted_list, wire, Direction, OnnxGru};
use crate::config::GruConfig;
use crate::error::{shown_path, untrusted, Result};
use crate::params::GruParams;

/// How an initial state of zeros is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zeros {
    /// An initializer of zeros (the default exporter's).
    Initializer,
    /// A `Constant` node of zeros.
    Constant,
    /// `Expand` of a constant of zeros (the TorchScript exporter's).
    ExpandOfConstant,
    /// `ConstantOfShape` of zero.
    ConstantOfShape,
}

impl Zeros {
    /// How it is made, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Zeros::Initializer => "an initializer of zeros",
            Zeros::Constant => "a Constant of zeros",
            Zeros::ExpandOfConstant => "Expand of a Constant of zeros",
            Zeros::ConstantOfShape => "ConstantOfShape of zero",
        }
    }
}

/// Where a `Reshape`'s target shape comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// A `Constant` node (the TorchScript exporter's `[0, 0, -1]`).
    ConstantNode,
    /// An initializer (the default exporter's static `[T, B, D·H]`).
    Initializer,
    /// Computed from the reshaped tensor's `Shape` (the default exporter's
    /// dynamic sizes).
    Computed,
}

/// How the output `Y` `(T, D, B, H)` of a GRU node becomes PyTorch's
/// `(T, B, D·H)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flatten {
    /// `Squeeze` of axis 1, the direction axis (one direction).
    Squeeze,
    /// `Transpose` (0, 2, 1, 3), then `Reshape` to `target` (as shown:
    /// `[0, 0, -1]`, `[6, 4, 10]`, `[T, B, D·H]`).
    TransposeReshape {
        /// The target, shown.
        target: String,
        /// Where the target comes from.
        source: TargetSource,
    },
}

impl Flatten {
    /// In words.
    pub fn describe(&self) -> String {
        match self {
            Flatten::Squeeze => "Squeeze of axis 1 (the direction axis)".into(),
            Flatten::TransposeReshape { target, source } => format!(
                "Transpose (0, 2, 1, 3) and Reshape to {target} ({})",
                match source {
                    TargetSource::ConstantNode => "a Constant node",
                    TargetSource::Initializer => "an initializer",
                    TargetSource::Computed => "computed from the tensor's Shape",
                }
            ),
        }
    }

    /// The torch exporter whose pattern this is, where it tells.
    fn exporter(&self) -> Option<Exporter> {
        match self {
            Flatten::Squeeze => Some(Exporter::TorchScript),
            Flatten::TransposeReshape { source, .. } => Some(match source {
                TargetSource::ConstantNode => Exporter::TorchScript,
                _ => Exporter::Dynamo,
            }),
        }
    }
}

/// Where a GRU node's `initial_h` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitialState {
    /// No `initial_h`: zeros.
    Absent,
    /// A constant of zeros.
    Zeros(Zeros),
    /// The graph input `input`: rows `start..end` of it (a `Slice` of axis
    /// 0), or all of it (`None`).
    Input {
        /// The graph input.
        input: String,
        /// The rows, where sliced.
        rows: Option<(i64, i64)>,
    },
    /// Anything else, described.
    Other(String),
}

impl InitialState {
    /// Whether the state is zeros (absent, or a constant of zeros).
    pub fn is_zeros(&self) -> bool {
        matches!(self, InitialState::Absent | InitialState::Zeros(_))
    }

    /// In words.
    pub fn describe(&self) -> String {
        match self {
            InitialState::Absent => "none (zeros)".into(),
            InitialState::Zeros(z) => format!("zeros ({})", z.describe()),
            InitialState::Input { input, rows: None } => {
                format!("the graph input `{}`", untrusted(input))
            }
            InitialState::Input {
                input,
                rows: Some((a, b)),
            } => format!("rows {a}..{b} of the graph input `{}`", untrusted(input)),
            InitialState::Other(what) => what.clone(),
        }
    }
}

/// Where `batch_first` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchFirst {
    /// Sequence first: layout 0, and not transposed both ways.
    No,
    /// The nodes' `layout = 1`.
    Layout1,
    /// The exporter's `Transpose` (1, 0, 2) of the graph input `input`
    /// before the first layer, and of the output after the last (or an
    /// output `Y` that nothing uses).
    Transposes {
        /// The graph input.
        input: String,
    },
}

/// Which torch exporter a pattern is that of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exporter {
    TorchScript,
    Dynamo,
}

/// What an import found in the graph and decided, for `import-onnx` to print.
#[derive(Clone, Debug)]
pub struct ImportReport {
    /// The model, as messages name it.
    pub origin: String,
    /// The model's `producer_name` and `producer_version`.
    pub producer: String,
    /// The GRU nodes' names, bottom layer first.
    pub nodes: Vec<String>,
    /// The number of GRU nodes in the graph.
    pub gru_nodes: usize,
    /// Whether `--node` picked the node.
    pub picked: bool,
    /// How each layer's `Y` reaches the next layer (one per join).
    pub joins: Vec<Flatten>,
    /// How the top layer's `Y` is flattened, where it is.
    pub output: Option<Flatten>,
    /// Where `batch_first` comes from.
    pub batch_first: BatchFirst,
    /// Each layer's initial state.
    pub initial_state: Vec<InitialState>,
    /// The `sequence_lens` input the nodes take, where they take one.
    pub lengths: Option<String>,
    /// The initializers read from external data files.
    pub external: Vec<super::external::ExternalRead>,
    /// What is worth knowing that changed nothing.
    pub notes: Vec<String>,
}

impl ImportReport {
    /// The torch exporter whose pattern the graph has, where the producer
    /// is `pytorch` and the pattern tells.
    pub fn exporter(&self) -> Option<&'static str> {
        if !self.producer.starts_with("pytorch") {
            return None;
        }
        let mut seen = self
            .joins
            .iter()
            .chain(&self.output)
            .filter_map(Flatten::exporter)
            .collect::<Vec<_>>();
        for s in &self.initial_state {
            match s {
                InitialState::Zeros(Zeros::Initializer) => seen.push(Exporter::Dynamo),
                InitialState::Zeros(Zeros::ExpandOfConstant) => seen.push(Exporter::TorchScript),
                _ => {}
            }
        }
        match (
            seen.contains(&Exporter::TorchScript),
            seen.contains(&Exporter::Dynamo),
        ) {
            (true, false) => Some("torch.onnx.export with dynamo=False (the TorchScript exporter)"),
            (false, true) => Some("torch.onnx.export with dynamo=True (the default exporter)"),
            _ => None,
        }
    }
}

/// A model's GRU nodes as one `nn.GRU`: its layers, bottom first, and
/// whether it is `batch_first`.
#[derive(Clone, Debug)]
pub struct OnnxStack {
    /// One GRU node a layer, bottom first.
    pub layers: Vec<OnnxGru>,
    /// Whether the model takes `(B, T, I)` and gives `(B, T, D·H)`: the
    /// nodes' `layout = 1`, or the exporter's Transposes.
    pub batch_first: bool,
    /// What was found and decided.
    pub report: ImportReport,
}

/// Where a GRU node's `X` comes from.
enum Source {
    /// Layer `layer`'s `Y`, through `flatten`.
    Gru { layer: usize, flatten: Flatten },
    /// The graph input, as it is.
    Input(String),
    /// A `Transpose` (1, 0, 2) of the graph input.
    TransposedInput(String),
    /// Anything else, described.
    Other(String),
}

/// The analysis of one graph.
struct Analysis<'g, 'a> {
    graph: &'g Graph<'a>,
    /// (node index, node) of each GRU node considered.
    layers: Vec<(usize, OnnxGru)>,
    /// The layer of each node index in `layers`.
    layer_of: std::collections::HashMap<usize, usize>,
    /// The sequence length and batch that the graph's input fixes, each
    /// where it does.
    input_tb: Tb,
}

/// A sequence length and a batch, each where known.
type Tb = (Option<i64>, Option<i64>);

/// `[a, b, c]` of a target, shown with `T`, `B`, `D`, `H` for the reshaped
/// tensor's own sizes.
fn show_target(target: &[Sym]) -> String {
    let names = ["T", "B", "D", "H"];
    let entries: Vec<String> = target
        .iter()
        .map(|s| match s {
            Sym::Lit(n) => n.to_string(),
            Sym::Dims(d) => d
                .iter()
                .map(|&k| names.get(k).copied().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join("·"),
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

/// Whether a `Reshape` of the transposed `Y` `(T, B, D, H)` to `target`
/// gives `(T, B, D·H)`; why not where it does not. `tb`: the sequence
/// length and batch, each where known; `allowzero`: the Reshape's attribute.
fn check_target(
    target: &[Sym],
    dh: i64,
    tb: Tb,
    allowzero: bool,
) -> std::result::Result<(), String> {
    if target.len() != 3 {
        return Err(format!("{} entries, where (T, B, D·H) has 3", target.len()));
    }
    let minus = target.iter().filter(|s| **s == Sym::Lit(-1)).count();
    if minus > 1 {
        return Err("more than one -1".into());
    }
    let want = ["T", "B", "D·H"];
    for (k, s) in target.iter().enumerate() {
        let fits = match (k, s) {
            (_, Sym::Lit(-1)) => true,
            (0 | 1, Sym::Lit(0)) => !allowzero,
            (0 | 1, Sym::Dims(d)) => d == &[k],
            (2, Sym::Dims(d)) => d == &[2, 3],
            (2, Sym::Lit(n)) => *n == dh,
            (0 | 1, Sym::Lit(n)) if *n > 0 => match if k == 0 { tb.0 } else { tb.1 } {
                Some(size) => *n == size,
                None => {
                    return Err(format!(
                        "its entry {k} is {n}, which cannot be checked against {} (the model \
                         declares no fixed shape for its input or for this tensor)",
                        want[k]
                    ))
                }
            },
            _ => false,
        };
        if !fits {
            let tb_now = match tb {
                (Some(t), Some(b)) => format!(" (T = {t}, B = {b} here)"),
                (Some(t), None) => format!(" (T = {t} here)"),
                (None, Some(b)) => format!(" (B = {b} here)"),
                (None, None) => String::new(),
            };
            return Err(format!(
                "its entry {k} is not {} (D·H = {dh}){tb_now}",
                want[k]
            ));
        }
    }
    Ok(())
}

impl<'g, 'a> Analysis<'g, 'a> {
    /// The layer whose node is node `index`.
    fn layer_of(&self, index: usize) -> Option<usize> {
        self.layer_of.get(&index).copied()
    }

    /// An analysis of `layers`.
    fn new(graph: &'g Graph<'a>, layers: Vec<(usize, OnnxGru)>, input_tb: Tb) -> Self {
        let layer_of = layers
            .iter()
            .enumerate()
            .map(|(k, (i, _))| (*i, k))
            .collect();
        Analysis {
            graph,
            layers,
            layer_of,
            input_tb,
        }
    }

    /// The layer whose `Y` (output 0) `y` is; why not where it is not.
    fn gru_y(&self, y: &str) -> std::result::Result<usize, String> {
        let g = self.graph;
        let y = g.through_identity(y);
        let Some((i, n)) = g.producer(y) else {
            return Err(g.describe(y));
        };
        let Some(k) = self.layer_of(i) else {
            return Err(g.describe(y));
        };
        if n.output.first().map(String::as_str) == Some(y) {
            Ok(k)
        } else {
            Err(format!(
                "the Y_h (output 1) of GRU node `{}`, not its Y",
                untrusted(&n.name)
            ))
        }
    }

    /// The sequence length and batch of a Reshape's transposed `Y`
    /// (`data`, `(T, B, D, H)`), each where known: the graph input's, else
    /// the shapes the model declares for `data` or for `y` `(T, D, B, H)`.
    fn tb(&self, data: &str, y: &str) -> Tb {
        let g = self.graph;
        let at = |name: &str, k: usize| {
            g.declared_shape(name)
                .filter(|s| s.len() == 4)
                .and_then(|s| s[k])
        };
        (
            self.input_tb.0.or_else(|| at(data, 0)).or_else(|| at(y, 0)),
            self.input_tb.1.or_else(|| at(data, 1)).or_else(|| at(y, 2)),
        )
    }

    /// Where `x` is a GRU layer's `Y` made `(T, B, D·H)` by Squeeze or
    /// Transpose + Reshape: the layer and how; else what was found.
    fn flattened(&self, x: &str) -> Result<std::result::Result<(usize, Flatten), String>> {
        let g = self.graph;
        let x = g.through_identity(x);
        let Some((_, n)) = g.producer(x) else {
            return Ok(Err(g.describe(x)));
        };
        let what = format!("`{}` node `{}`", untrusted(&n.op_type), untrusted(&n.name));
        let input = |k: usize| n.input.get(k).map(String::as_str).filter(|s| !s.is_empty());
        match n.op_type.as_str() {
            "Squeeze" => {
                let k = match self.gru_y(input(0).unwrap_or("")) {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(format!("`{}`, made by {what} of {e}", untrusted(x)))),
                };
                let axes = match input(1) {
                    Some(a) => g.int_constant(a)?,
                    None => Graph::attr(n, "axes").map(|a| a.ints.clone()),
                };
                let gru = &self.layers[k].1;
                if !matches!(axes.as_deref(), Some([1] | [-3])) {
                    return Ok(Err(format!(
                        "{what}, a Squeeze of GRU node `{}`'s Y with axes {}, not [1] (the direction axis)",
                        untrusted(&gru.name),
                        axes.map_or("that are not constants".into(), |a| format!("{a:?}"))
                    )));
                }
                if gru.direction.count() != 1 {
                    return Ok(Err(format!(
                        "{what}, a Squeeze of the direction axis of GRU node `{}`'s Y, which has 2 directions",
                        untrusted(&gru.name)
                    )));
                }
                Ok(Ok((k, Flatten::Squeeze)))
            }
            "Reshape" => {
                let data = g.through_identity(input(0).unwrap_or(""));
                let t = match g.producer(data) {
                    Some((_, t)) if Graph::is_transpose(t, &[0, 2, 1, 3]) => t,
                    Some((_, t)) if t.op_type == "Transpose" => {
                        return Ok(Err(format!(
                            "{what} of a Transpose with perm {:?}, not [0, 2, 1, 3]",
                            Graph::perm(t)
                        )))
                    }
                    _ => {
                        return Ok(Err(format!(
                            "{what} of {}, not of a Transpose (0, 2, 1, 3) of a GRU node's Y",
                            g.describe(data)
                        )))
                    }
                };
                let y = t.input.first().map(String::as_str).unwrap_or("");
                let k = match self.gru_y(y) {
                    Ok(k) => k,
                    Err(e) => {
                        return Ok(Err(format!(
                            "{what} of a Transpose (0, 2, 1, 3) of {e}, not of a GRU node's Y"
                        )))
                    }
                };
                let Some(shape) = input(1) else {
                    return Ok(Err(format!("{what} without a shape input")));
                };
                let Some(target) = g.shape_vector(shape, data, 4)? else {
                    return Ok(Err(format!(
                        "{what} to {}, not a constant or a shape computed from its input's Shape",
                        g.describe(shape)
                    )));
                };
                let shape = g.through_identity(shape);
                let source = if g.initializer(shape).is_some() {
                    TargetSource::Initializer
                } else if g
                    .producer(shape)
                    .is_some_and(|(_, c)| c.op_type == "Constant")
                {
                    TargetSource::ConstantNode
                } else {
                    TargetSource::Computed
                };
                let gru = &self.layers[k].1;
                let dh = (gru.direction.count() * gru.hidden_size) as i64;
                let allowzero = Graph::attr(n, "allowzero").is_some_and(|a| a.i != 0);
                let shown = show_target(&target);
                if let Err(why) = check_target(&target, dh, self.tb(data, y), allowzero) {
                    return Ok(Err(format!(
                        "{what}, a Reshape of GRU node `{}`'s Y to {shown}, not to (T, B, D·H): {why}",
                        untrusted(&gru.name)
                    )));
                }
                Ok(Ok((
                    k,
                    Flatten::TransposeReshape {
                        target: shown,
                        source,
                    },
                )))
            }
            _ => Ok(Err(g.describe(x))),
        }
    }

    /// Where layer `k`'s `X` comes from.
    fn source(&self, k: usize) -> Result<Source> {
        let g = self.graph;
        let node = g.node(self.layers[k].0);
        let Some(x) = node.input.first().filter(|s| !s.is_empty()) else {
            return Ok(Source::Other("no X input".into()));
        };
        let x = g.through_identity(x);
        if g.is_input(x) {
            return Ok(Source::Input(x.to_string()));
        }
        if let Some((_, n)) = g.producer(x) {
            if let Some(i) = n.input.first() {
                let i = g.through_identity(i);
                if Graph::is_transpose(n, &[1, 0, 2]) && g.is_input(i) {
                    return Ok(Source::TransposedInput(i.to_string()));
                }
            }
            if n.op_type == "Squeeze" || n.op_type == "Reshape" {
                return Ok(match self.flattened(x)? {
                    Ok((layer, flatten)) => Source::Gru { layer, flatten },
                    Err(what) => Source::Other(what),
                });
            }
        }
        Ok(Source::Other(g.describe(x)))
    }

    /// The sequence length and batch that the shape declared for the graph
    /// input a layer reads fixes, each where it does.
    fn input_tb(&self) -> Tb {
        let g = self.graph;
        let found = self.layers.iter().find_map(|(i, _)| {
            let x = g.through_identity(g.node(*i).input.first()?);
            let (name, transposed) = if g.is_input(x) {
                (x, false)
            } else {
                let (_, n) = g.producer(x)?;
                let i = g.through_identity(n.input.first()?);
                (Graph::is_transpose(n, &[1, 0, 2]) && g.is_input(i)).then_some((i, true))?
            };
            match g.declared_shape(name)? {
                [a, b, _] if transposed => Some((*b, *a)),
                [a, b, _] => Some((*a, *b)),
                _ => None,
            }
        });
        found.unwrap_or((None, None))
    }

    /// The `(T, B, D·H)` forms of layer `k`'s `Y` that the graph makes
    /// (Squeeze, or Transpose + Reshape), with how.
    fn flattened_outputs(&self, k: usize) -> Result<Vec<(String, Flatten)>> {
        let g = self.graph;
        let Some(y) = g.node(self.layers[k].0).output.first() else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for &c in g.consumers(y) {
            let cn = g.node(c);
            let candidates: Vec<&str> = match cn.op_type.as_str() {
                "Squeeze" => cn.output.iter().take(1).map(String::as_str).collect(),
                "Transpose" => cn
                    .output
                    .first()
                    .map(|t| {
                        g.consumers(t)
                            .iter()
                            .map(|&r| g.node(r))
                            .filter(|r| r.op_type == "Reshape")
                            .filter_map(|r| r.output.first().map(String::as_str))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            for x in candidates {
                if let Ok((layer, flatten)) = self.flattened(x)? {
                    if layer == k {
                        found.push((x.to_string(), flatten));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Where `initial_h` (`name`) comes from.
    fn initial_state(&self, name: Option<&str>) -> Result<InitialState> {
        let g = self.graph;
        let Some(name) = name.filter(|s| !s.is_empty()) else {
            return Ok(InitialState::Absent);
        };
        let name = g.through_identity(name);
        if g.is_input(name) {
            return Ok(InitialState::Input {
                input: name.to_string(),
                rows: None,
            });
        }
        if let Some(z) = g.zeros(name)? {
            return Ok(InitialState::Zeros(z));
        }
        if let Some((_, n)) = g.producer(name) {
            if n.op_type == "Slice" {
                if let Some(rows) = self.sliced_rows(n)? {
                    return Ok(rows);
                }
            }
        }
        if g.initializer(name).is_some() {
            return Ok(InitialState::Other(format!(
                "the initializer `{}`, not zeros",
                untrusted(name)
            )));
        }
        Ok(InitialState::Other(g.describe(name)))
    }

    /// A `Slice` of rows of a graph input, as an initial state.
    fn sliced_rows(&self, n: &proto::NodeProto) -> Result<Option<InitialState>> {
        let g = self.graph;
        let Some(data) = n.input.first().map(|d| g.through_identity(d)) else {
            return Ok(None);
        };
        if !g.is_input(data) {
            return Ok(None);
        }
        // Opset 10 and later: inputs; before: attributes.
        let part = |k: usize, attr: &str| -> Result<Option<Vec<i64>>> {
            match n.input.get(k).filter(|s| !s.is_empty()) {
                Some(x) => g.int_constant(x),
                None => Ok(Graph::attr(n, attr).map(|a| a.ints.clone())),
            }
        };
        let (starts, ends) = (part(1, "starts")?, part(2, "ends")?);
        let axes = part(3, "axes")?;
        let steps = match n.input.get(4).filter(|s| !s.is_empty()) {
            Some(x) => g.int_constant(x)?,
            None => None,
        };
        let axes_ok = n.input.get(3).is_none_or(|s| s.is_empty()) && axes.is_none()
            || matches!(axes.as_deref(), Some([0]));
        let steps_ok =
            n.input.get(4).is_none_or(|s| s.is_empty()) || steps.as_deref() == Some(&[1]);
        match (starts.as_deref(), ends.as_deref()) {
            (Some(&[a]), Some(&[b])) if axes_ok && steps_ok => Ok(Some(InitialState::Input {
                input: data.to_string(),
                rows: Some((a, b)),
            })),
            _ => Ok(None),
        }
    }
}

impl OnnxStack {
    /// Reads the GRU nodes of an `.onnx` file as one `nn.GRU`: all of them
    /// (one node, or a stack), or the node named `node` alone.
    ///
    /// Only a regular file of at most [`crate::files::ONNX_MAX`] bytes is
    /// read; weights in external data files are read from the model's
    /// folder ([`super::external`]).
    pub fn load(path: impl AsRef<Path>, node: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::files::read_capped(
            path,
            crate::files::ONNX_MAX,
            "an ONNX model (protobuf's limit)",
        )?;
        let folder = path.parent().unwrap_or(Path::new("."));
        Self::from_bytes_in(&bytes, &shown_path(path), Some(folder), node)
    }

    /// [`load`](Self::load) from bytes in memory, without external data
    /// (refused: there is no folder to read it from); `origin` names them
    /// in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str, node: Option<&str>) -> Result<Self> {
        Self::from_bytes_in(bytes, origin, None, node)
    }

    /// [`load`](Self::load) from bytes in memory, reading external data
    /// from `folder` (`None`: refused).
    ///
    /// What decoding would allocate is counted from the wire format first
    /// ([`wire::check`]): a model of millions of empty nodes is refused
    /// before anything is decoded.
    pub fn from_bytes_in(
        bytes: &[u8],
        origin: &str,
        folder: Option<&Path>,
        node: Option<&str>,
    ) -> Result<Self> {
        use prost::Message;
        wire::check(bytes, origin)?;
        let model = proto::ModelProto::decode(bytes)
            .map_err(|e| err(origin, format!("not a valid ONNX model: {e}")))?;
        let g = model
            .graph
            .as_ref()
            .ok_or_else(|| err(origin, "the ONNX model has no graph"))?;
        let graph = Graph::new(g, origin, folder);
        let producer = format!(
            "{} {}",
            untrusted(&model.producer_name),
            untrusted(&model.producer_version)
        )
        .trim()
        .to_string();
        analyse(&graph, node, producer)
    }

    /// The only layer, where the stack has one; else refused, saying what
    /// to do.
    pub(crate) fn into_single(mut self) -> Result<OnnxGru> {
        if self.layers.len() == 1 {
            return Ok(self.layers.remove(0));
        }
        Err(err(
            &self.report.origin,
            format!(
                "the ONNX model's {} GRU nodes ({}) are one stack of {} layers: read it with OnnxStack \
                 (`import-onnx` does), or name one node",
                self.layers.len(),
                names(&self.report.nodes),
                self.layers.len()
            ),
        ))
    }

    /// The equivalent `nn.GRU` configuration: `num_layers` = the layers,
    /// the nodes' direction ([`super::config_direction`]), hidden and
    /// input sizes, bias and reset form, and `batch_first`.
    pub fn config(&self) -> Result<GruConfig> {
        let first = &self.layers[0];
        // (The layers' directions agree: the stack's reader checks it.)
        let direction = config_direction(first);
        let c = GruConfig::new(first.input_size, first.hidden_size)
            .layers(self.layers.len())
            .direction(direction)
            .batch_first(self.batch_first)
            .bias(first.b.is_some())
            .reset_before(!first.linear_before_reset);
        c.validate()?;
        Ok(c)
    }

    /// The parameters in PyTorch's names and order (gates r, z, n), layer
    /// by layer.
    pub fn params(&self) -> Result<GruParams<f32>> {
        let config = self.config()?;
        let mut named = BTreeMap::new();
        for (l, layer) in self.layers.iter().enumerate() {
            layer.insert_named(l, &mut named);
        }
        GruParams::from_named(&config, &named)
    }

    /// What was found and decided, one line each (`key: value`), for
    /// `import-onnx` to print.
    pub fn describe(&self) -> Vec<String> {
        let r = &self.report;
        let mut out = Vec::new();
        let n = self.layers.len();
        out.push(if n == 1 {
            format!(
                "layers: 1 (GRU node `{}`{})",
                untrusted(&r.nodes[0]),
                if r.picked {
                    format!(", picked by --node of the model's {}", r.gru_nodes)
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "layers: {n} GRU nodes as one stack (num_layers = {n}), bottom first: {}",
                names(&r.nodes)
            )
        });
        for (k, j) in r.joins.iter().enumerate() {
            out.push(format!("join {}->{}: {}", k, k + 1, j.describe()));
        }
        if let Some(o) = &r.output {
            out.push(format!("output: Y through {}", o.describe()));
        }
        let first = &self.layers[0];
        out.push(format!(
            "direction: {} (bidirectional = {})",
            first.direction.name(),
            first.direction == Direction::Bidirectional
        ));
        out.push(match &r.batch_first {
            BatchFirst::No => "batch_first: false (layout 0, not transposed both ways)".into(),
            BatchFirst::Layout1 => "batch_first: true (the node's layout = 1)".into(),
            BatchFirst::Transposes { input } => format!(
                "batch_first: true (Transpose (1, 0, 2) of the graph input `{}` and of the output: \
                 the exporter's batch_first)",
                untrusted(input)
            ),
        });
        let states = &r.initial_state;
        out.push(if states.iter().all(InitialState::is_zeros) {
            match &states[0] {
                InitialState::Zeros(z) => format!(
                    "initial_h: zeros ({}; the model takes no h0)",
                    z.describe()
                ),
                _ => "initial_h: none (zeros; the model takes no h0)".into(),
            }
        } else if n > 1 {
            let input = match &states[0] {
                InitialState::Input { input, .. } => untrusted(input),
                _ => String::new(),
            };
            format!(
                "initial_h: rows l·D..(l+1)·D of the graph input `{input}` for layer l (nn.GRU's h0)"
            )
        } else {
            format!("initial_h: {}", states[0].describe())
        });
        out.push(match &r.lengths {
            Some(l) => format!(
                "lengths: the sequence_lens input `{}` (give them as lengths)",
                untrusted(l)
            ),
            None => "lengths: none (no sequence_lens input)".into(),
        });
        if r.external.is_empty() {
            out.push("weights: inside the model file".into());
        } else {
            let mut files: Vec<&str> = r.external.iter().map(|e| e.location.as_str()).collect();
            files.sort();
            files.dedup();
            let bytes: u64 = r.external.iter().map(|e| e.bytes).sum();
            out.push(format!(
                "weights: {} initializer{} ({bytes} bytes) from external data: {}",
                r.external.len(),
                if r.external.len() == 1 { "" } else { "s" },
                quoted_list(files.iter().map(|f| format!("`{}`", untrusted(f))), "", "")
            ));
        }
        let producer = if r.producer.is_empty() {
            "no producer named".to_string()
        } else {
            r.producer.clone()
        };
        out.push(match r.exporter() {
            Some(e) => format!("producer: {producer}; the graph has the pattern of {e}"),
            None => format!("producer: {producer}"),
        });
        for note in &r.notes {
            out.push(format!("note: {note}"));
        }
        out
    }
}

/// Node names for a message, quoted.
fn names(nodes: &[String]) -> String {
    quoted_list(nodes.iter().map(|n| format!("`{}`", untrusted(n))), "", "")
}

/// Finds the GRU nodes of `graph` and makes them one [`OnnxStack`].
fn analyse(graph: &Graph<'_>, node: Option<&str>, producer: String) -> Result<OnnxStack> {
    let origin = graph.origin;
    let grus: Vec<usize> = (0..graph.g.node.len())
        .filter(|&i| {
            let n = graph.node(i);
            n.op_type == "GRU" && (n.domain.is_empty() || n.domain == "ai.onnx")
        })
        .collect();
    let all_names: Vec<String> = grus.iter().map(|&i| graph.node(i).name.clone()).collect();
    let chosen: Vec<usize> = match (node, grus.len()) {
        (_, 0) => return Err(err(origin, "the ONNX model has no GRU node")),
        (None, _) => grus.clone(),
        (Some(want), _) => vec![*grus
            .iter()
            .find(|&&i| graph.node(i).name == want)
            .ok_or_else(|| {
                err(
                    origin,
                    format!(
                        "the ONNX model has no GRU node named `{}`; its GRU nodes: {}",
                        untrusted(want),
                        names(&all_names)
                    ),
                )
            })?],
    };
    // The weights' values, from their initializers' sizes, must fit in
    // memory before any is read (an initializer named by many nodes is
    // read once for each): three copies of them (the nodes' values, the
    // parameters in PyTorch's order, what is written).
    let weights: u64 = chosen
        .iter()
        .flat_map(|&i| graph.node(i).input.iter().skip(1).take(3))
        .filter_map(|name| graph.initializer(name))
        .map(|t| {
            t.dims
                .iter()
                .try_fold(4u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
                .unwrap_or(u64::MAX)
        })
        .fold(0u64, u64::saturating_add);
    crate::memory::check_host(
        &format!("the weights of the GRU nodes of {origin}"),
        weights.saturating_mul(3),
    )?;
    let mut layers = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        layers.push((i, OnnxGru::from_node(graph, i)?));
    }
    let mut a = Analysis::new(graph, layers, (None, None));
    a.input_tb = a.input_tb();
    let n = a.layers.len();
    let sources: Vec<Source> = (0..n).map(|k| a.source(k)).collect::<Result<_>>()?;
    // The order of the layers, and the joins between them.
    let mut order = Vec::with_capacity(n);
    let mut joins = Vec::new();
    if n == 1 {
        order.push(0);
    } else {
        let label = |k: usize| format!("GRU node `{}`", untrusted(&a.layers[k].1.name));
        let not_a_stack = |details: String| {
            refuse(
                origin,
                format!(
                    "the ONNX model has {n} GRU nodes ({}), but they are not one stack (each layer \
                     reading the Y of the one below through Squeeze, or Transpose (0, 2, 1, 3) and \
                     Reshape to (T, B, D·H)): {details}; import one of them with --node NAME",
                    names(&all_names)
                ),
            )
        };
        let roots: Vec<usize> = (0..n)
            .filter(|&k| !matches!(sources[k], Source::Gru { .. }))
            .collect();
        if roots.len() != 1 {
            let details = if roots.is_empty() {
                "every one reads another one's output (a cycle)".to_string()
            } else {
                let each: Vec<String> = roots
                    .iter()
                    .map(|&k| {
                        let from = match &sources[k] {
                            Source::Input(x) => format!("the graph input `{}`", untrusted(x)),
                            Source::TransposedInput(x) => format!(
                                "a Transpose (1, 0, 2) of the graph input `{}`",
                                untrusted(x)
                            ),
                            Source::Other(what) => what.clone(),
                            Source::Gru { .. } => unreachable!("roots read no GRU node"),
                        };
                        format!("{} reads {from}", label(k))
                    })
                    .collect();
                joined_list(each.into_iter(), "; ")
            };
            return Err(not_a_stack(details));
        }
        let mut next: Vec<Option<usize>> = vec![None; n];
        for (k, s) in sources.iter().enumerate() {
            if let Source::Gru { layer: j, .. } = s {
                if let Some(other) = next[*j] {
                    return Err(not_a_stack(format!(
                        "{}'s Y feeds both {} and {}",
                        label(*j),
                        label(other),
                        label(k)
                    )));
                }
                next[*j] = Some(k);
            }
        }
        order.push(roots[0]);
        let mut placed = vec![false; n];
        placed[roots[0]] = true;
        while let Some(k) = next[*order.last().expect("a root")] {
            if placed[k] {
                break;
            }
            placed[k] = true;
            if let Source::Gru { flatten, .. } = &sources[k] {
                joins.push(flatten.clone());
            }
            order.push(k);
        }
        if order.len() != n {
            let left: Vec<String> = (0..n)
                .filter(|&k| !placed[k])
                .map(|k| a.layers[k].1.name.clone())
                .collect();
            return Err(not_a_stack(format!(
                "{} read one another in a cycle, apart from the layers that start at the graph's input",
                names(&left)
            )));
        }
        // Every layer like the first, each reading D·H features.
        let first = &a.layers[order[0]].1;
        let d = first.direction.count();
        for (l, &k) in order.iter().enumerate() {
            let gru = &a.layers[k].1;
            let here = format!("layer {l} ({})", label(k));
            let differs = |what: &str, this: String, that: String| {
                refuse(
                    origin,
                    format!(
                        "the GRU nodes make a stack, but {here} has {what} = {this} where layer 0 \
                         ({}) has {that}; every layer of an nn.GRU has the same",
                        label(order[0])
                    ),
                )
            };
            if gru.layout != 0 {
                return Err(refuse(
                    origin,
                    format!(
                        "{here} has layout = 1: a stack is read from layout 0 nodes (as torch \
                         exports them); import one node with --node NAME"
                    ),
                ));
            }
            if gru.direction != first.direction {
                return Err(differs(
                    "direction",
                    gru.direction.name().into(),
                    first.direction.name().into(),
                ));
            }
            if gru.hidden_size != first.hidden_size {
                return Err(differs(
                    "hidden size",
                    gru.hidden_size.to_string(),
                    first.hidden_size.to_string(),
                ));
            }
            if gru.linear_before_reset != first.linear_before_reset {
                return Err(differs(
                    "linear_before_reset",
                    (gru.linear_before_reset as u8).to_string(),
                    (first.linear_before_reset as u8).to_string(),
                ));
            }
            if gru.b.is_some() != first.b.is_some() {
                return Err(differs(
                    "bias (a B input)",
                    gru.b.is_some().to_string(),
                    first.b.is_some().to_string(),
                ));
            }
            if l > 0 && gru.input_size != d * first.hidden_size {
                return Err(refuse(
                    origin,
                    format!(
                        "{here} reads {} features, but the layer below gives D·H = {}",
                        gru.input_size,
                        d * first.hidden_size
                    ),
                ));
            }
        }
    }
    let top = *order.last().expect("a layer");
    let root_source = &sources[order[0]];
    let flats = a.flattened_outputs(top)?;
    let mut unordered: Vec<Option<(usize, OnnxGru)>> = a.layers.into_iter().map(Some).collect();
    let layers: Vec<(usize, OnnxGru)> = order
        .iter()
        .map(|&k| unordered[k].take().expect("each layer once"))
        .collect();
    let a = Analysis::new(graph, layers, a.input_tb);
    let n = a.layers.len();
    let g = graph;
    let input = |k: usize, i: usize| {
        g.node(a.layers[k].0)
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut notes = Vec::new();
    // The initial states.
    let d = a.layers[0].1.direction.count() as i64;
    let states: Vec<InitialState> = (0..n)
        .map(|k| a.initial_state(input(k, 5)))
        .collect::<Result<_>>()?;
    if n > 1 && !states.iter().all(InitialState::is_zeros) {
        let h0 = match &states[0] {
            InitialState::Input { input, .. } => Some(input.clone()),
            _ => None,
        };
        let fits = |l: usize, s: &InitialState| match s {
            InitialState::Input {
                input,
                rows: Some((a, b)),
            } => Some(input) == h0.as_ref() && *a == l as i64 * d && *b == (l as i64 + 1) * d,
            _ => false,
        };
        if let Some(l) = (0..n).find(|&l| !fits(l, &states[l])) {
            let each: Vec<String> = states
                .iter()
                .enumerate()
                .map(|(l, s)| format!("layer {l}: {}", s.describe()))
                .collect();
            return Err(refuse(
                origin,
                format!(
                    "the GRU nodes make a stack, but the initial_h of layer {l} (GRU node `{}`) is \
                     not what nn.GRU's h0 gives it: all layers must start from zeros, or each \
                     layer l from rows l·D..(l+1)·D of one graph input ({})",
                    untrusted(&a.layers[l].1.name),
                    joined_list(each.into_iter(), "; ")
                ),
            ));
        }
    }
    if n == 1 {
        match &states[0] {
            InitialState::Input {
                input,
                rows: Some((s, e)),
            } if (*s, *e) != (0, d) => notes.push(format!(
                "initial_h is rows {s}..{e} of the graph input `{}`: give the imported model \
                 those rows as its h0",
                untrusted(input)
            )),
            InitialState::Other(what) => notes.push(format!(
                "initial_h is {what}: the imported model starts from the h0 it is given, or zeros"
            )),
            _ => {}
        }
    }
    // The lengths.
    let lengths = input(0, 4).map(str::to_string);
    for k in 1..n {
        if input(k, 4) != lengths.as_deref() {
            return Err(refuse(
                origin,
                format!(
                    "the GRU nodes make a stack, but layer {k} (GRU node `{}`) takes sequence_lens \
                     {} where layer 0 takes {}; every layer must take the same lengths",
                    untrusted(&a.layers[k].1.name),
                    input(k, 4).map_or("none".into(), |s| format!("`{}`", untrusted(s))),
                    lengths
                        .as_deref()
                        .map_or("none".into(), |s| format!("`{}`", untrusted(s)))
                ),
            ));
        }
    }
    // batch_first: layout 1, or the exporter's Transposes both ways.
    let top_node = g.node(a.layers[n - 1].0);
    let y = top_node.output.first().map(String::as_str).unwrap_or("");
    let back = |x: &str| {
        let users = g.consumers(x);
        !g.is_output(x)
            && !users.is_empty()
            && users
                .iter()
                .all(|&u| Graph::is_transpose(g.node(u), &[1, 0, 2]))
    };
    let out_back = !flats.is_empty() && flats.iter().all(|(x, _)| back(x)) && !g.is_output(y);
    let any_back = flats.iter().any(|(x, _)| {
        g.consumers(x)
            .iter()
            .any(|&u| Graph::is_transpose(g.node(u), &[1, 0, 2]))
    });
    let batch_first = if a.layers[0].1.layout == 1 {
        BatchFirst::Layout1
    } else if let Source::TransposedInput(x) = root_source {
        if !g.is_used(y) || out_back {
            BatchFirst::Transposes { input: x.clone() }
        } else {
            notes.push(format!(
                "the graph input `{}` reaches the first layer through Transpose (1, 0, 2), but \
                 the output is not transposed back: imported sequence first, as the nodes \
                 compute (give it the transposed input, (T, B, I))",
                untrusted(x)
            ));
            BatchFirst::No
        }
    } else {
        if any_back {
            notes.push(
                "the output is transposed (1, 0, 2) but the input is not: imported sequence \
                 first, as the nodes compute"
                    .into(),
            );
        }
        BatchFirst::No
    };
    if let Source::Other(what) = root_source {
        if n == 1 && a.layers[0].1.layout == 0 && !what.starts_with("the graph input") {
            notes.push(format!("the first layer reads {what}"));
        }
    }
    let report = ImportReport {
        origin: origin.to_string(),
        producer,
        nodes: a.layers.iter().map(|(_, l)| l.name.clone()).collect(),
        gru_nodes: grus.len(),
        picked: node.is_some(),
        joins,
        output: flats.first().map(|(_, f)| f.clone()),
        batch_first: batch_first.clone(),
        initial_state: states,
        lengths,
        external: graph.external.borrow().clone(),
        notes,
    };
    Ok(OnnxStack {
        layers: a.layers.into_iter().map(|(_, l)| l).collect(),
        batch_first: batch_first != BatchFirst::No,
        report,
    })
}
