//! The graph around the GRU nodes, for [`super::stack`]: which node makes
//! and which nodes use each value, the initializers, the graph's inputs
//! and outputs, the shapes the model declares, the tensors' values
//! (external data included), and the small integer computations that
//! shapes and axes are made of.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::external::{self, ExternalRead};
use super::proto::{self, GraphProto, NodeProto, TensorProto};
use crate::error::{untrusted, GruError, Result};

/// The most entries of an integer constant that is read as a shape or as
/// axes (a shape has a few).
const INTS_MAX: usize = 64;

/// The deepest chain of nodes that an integer computation is followed through.
const DEPTH_MAX: usize = 16;

/// One entry of a shape computed in the graph: a number, or the product
/// of some dimensions of one given tensor (read with `Shape`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sym {
    /// A number.
    Lit(i64),
    /// The product of these dimensions (sorted) of the tensor.
    Dims(Vec<usize>),
}

/// A graph with its lookups.
pub(crate) struct Graph<'a> {
    /// The graph.
    pub g: &'a GraphProto,
    /// The model, as messages name it.
    pub origin: &'a str,
    /// The model's folder, where it was read from a file.
    folder: Option<&'a Path>,
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    inits: HashMap<&'a str, &'a TensorProto>,
    inputs: HashSet<&'a str>,
    outputs: HashSet<&'a str>,
    shapes: HashMap<&'a str, Vec<Option<i64>>>,
    /// The external data read so far.
    pub external: RefCell<Vec<ExternalRead>>,
}

/// The dims of a tensor, checked, and the number of its elements.
fn dims(t: &TensorProto, origin: &str) -> Result<(Vec<usize>, usize)> {
    let name = untrusted(&t.name);
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count = Some(1usize);
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| {
            super::err(
                origin,
                format!("initializer `{name}` has a negative size {d}"),
            )
        })?;
        count = count.and_then(|c| c.checked_mul(d));
        dims.push(d);
    }
    let count =
        count.ok_or_else(|| super::err(origin, format!("initializer `{name}` is too large")))?;
    Ok((dims, count))
}

impl<'a> Graph<'a> {
    /// The lookups of `g` (where a name is made twice, the first node counts).
    pub fn new(g: &'a GraphProto, origin: &'a str, folder: Option<&'a Path>) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                producer.entry(o.as_str()).or_insert(i);
            }
            for x in n.input.iter().filter(|x| !x.is_empty()) {
                let users = consumers.entry(x.as_str()).or_default();
                if users.last() != Some(&i) {
                    users.push(i);
                }
            }
        }
        let mut inits = HashMap::new();
        for t in &g.initializer {
            inits.entry(t.name.as_str()).or_insert(t);
        }
        let inputs = g
            .input
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| !inits.contains_key(n))
            .collect();
        let outputs = g.output.iter().map(|v| v.name.as_str()).collect();
        let mut shapes = HashMap::new();
        for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
            let Some(shape) = v
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
            else {
                continue;
            };
            let dims = shape
                .dim
                .iter()
                .map(|d| d.dim_value.filter(|&v| v > 0))
                .collect();
            shapes.entry(v.name.as_str()).or_insert(dims);
        }
        Graph {
            g,
            origin,
            folder,
            producer,
            consumers,
            inits,
            inputs,
            outputs,
            shapes,
            external: RefCell::new(Vec::new()),
        }
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &'a NodeProto {
        &self.g.node[i]
    }

    /// The node that makes `name`, where one does.
    pub fn producer(&self, name: &str) -> Option<(usize, &'a NodeProto)> {
        self.producer.get(name).map(|&i| (i, &self.g.node[i]))
    }

    /// The nodes that use `name`, in graph order.
    pub fn consumers(&self, name: &str) -> &[usize] {
        self.consumers.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether `name` is an input of the graph (not an initializer).
    pub fn is_input(&self, name: &str) -> bool {
        self.inputs.contains(name)
    }

    /// Whether `name` is an output of the graph.
    pub fn is_output(&self, name: &str) -> bool {
        self.outputs.contains(name)
    }

    /// Whether anything uses `name` (a node, or the graph's outputs).
    pub fn is_used(&self, name: &str) -> bool {
        !name.is_empty() && (self.is_output(name) || !self.consumers(name).is_empty())
    }

    /// The initializer `name`.
    pub fn initializer(&self, name: &str) -> Option<&'a TensorProto> {
        self.inits.get(name).copied()
    }

    /// The shape the model declares for `name` (`None` per dimension not fixed).
    pub fn declared_shape(&self, name: &str) -> Option<&[Option<i64>]> {
        self.shapes.get(name).map(Vec::as_slice)
    }

    /// `name` past the `Identity` nodes that pass it on.
    pub fn through_identity<'s>(&'s self, mut name: &'s str) -> &'s str {
        for _ in 0..DEPTH_MAX {
            match self.producer(name) {
                Some((_, n)) if n.op_type == "Identity" && !n.input.is_empty() => {
                    name = &n.input[0];
                }
                _ => break,
            }
        }
        name
    }

    /// What `name` is, for a message: `` the graph input `x` ``, `` the
    /// initializer `w` ``, `` `z`, made by `Add` node `add` ``.
    pub fn describe(&self, name: &str) -> String {
        let shown = untrusted(name);
        if self.is_input(name) {
            return format!("the graph input `{shown}`");
        }
        if self.initializer(name).is_some() {
            return format!("the initializer `{shown}`");
        }
        match self.producer(name) {
            Some((_, n)) => format!(
                "`{shown}`, made by `{}` node `{}`",
                untrusted(&n.op_type),
                untrusted(&n.name)
            ),
            None => format!("`{shown}`, which no node makes and the graph does not take"),
        }
    }

    /// The bytes of tensor `t`, `elem` bytes an element: its `raw_data`, or
    /// its external data (checked and read, see [`external`]); `None` where
    /// it holds its values in a typed field instead.
    fn raw(&self, t: &TensorProto, count: usize, elem: usize) -> Result<Option<Vec<u8>>> {
        if external::is_external(t) {
            let want = (count as u64).checked_mul(elem as u64).ok_or_else(|| {
                super::err(
                    self.origin,
                    format!("initializer `{}` is too large", untrusted(&t.name)),
                )
            })?;
            let (read, bytes) = external::read(t, want, self.folder, self.origin)?;
            self.external.borrow_mut().push(read);
            return Ok(Some(bytes));
        }
        Ok((!t.raw_data.is_empty()).then(|| t.raw_data.clone()))
    }

    /// The values of a float32 initializer (inside the model or in external data).
    pub fn floats(&self, t: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
        let name = untrusted(&t.name);
        if t.data_type != proto::FLOAT {
            return Err(super::err(
                self.origin,
                format!(
                    "initializer `{name}` has ONNX data type {}, expected 1 (FLOAT)",
                    t.data_type
                ),
            ));
        }
        let (dims, count) = dims(t, self.origin)?;
        let wrong = || {
            super::err(
                self.origin,
                format!(
                    "initializer `{name}` has shape {dims:?} ({count} values) but holds {} bytes of raw data and {} float values",
                    t.raw_data.len(),
                    t.float_data.len()
                ),
            )
        };
        let values: Vec<f32> = match self.raw(t, count, 4)? {
            Some(raw) if raw.len() % 4 == 0 && raw.len() / 4 == count => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Some(_) => return Err(wrong()),
            None => t.float_data.clone(),
        };
        if values.len() != count {
            return Err(wrong());
        }
        Ok((dims, values))
    }

    /// The values of an INT64 or INT32 tensor of at most [`INTS_MAX`]
    /// elements; `None` for another type or a larger tensor.
    fn tensor_ints(&self, t: &TensorProto) -> Result<Option<Vec<i64>>> {
        let elem = match t.data_type {
            proto::INT64 => 8,
            proto::INT32 => 4,
            _ => return Ok(None),
        };
        let (_, count) = dims(t, self.origin)?;
        if count > INTS_MAX {
            return Ok(None);
        }
        let values: Vec<i64> = match self.raw(t, count, elem)? {
            Some(raw) if elem == 8 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Some(raw) => raw
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect(),
            None if elem == 8 => t.int64_data.clone(),
            None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
        };
        Ok((values.len() == count).then_some(values))
    }

    /// The attribute `name` of node `n`.
    pub fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n proto::AttributeProto> {
        n.attribute.iter().find(|a| a.name == name)
    }

    /// The integer constant `name`: an INT64 or INT32 initializer, or a
    /// `Constant` node's `value`, `value_ints` or `value_int` (through
    /// `Identity` nodes); `None` where it is not one.
    pub fn int_constant(&self, name: &str) -> Result<Option<Vec<i64>>> {
        let name = self.through_identity(name);
        if let Some(t) = self.initializer(name) {
            return self.tensor_ints(t);
        }
        let Some((_, n)) = self.producer(name) else {
            return Ok(None);
        };
        if n.op_type != "Constant" {
            return Ok(None);
        }
        if let Some(a) = Self::attr(n, "value") {
            return match &a.t {
                Some(t) => self.tensor_ints(t),
                None => Ok(None),
            };
        }
        if let Some(a) = Self::attr(n, "value_ints") {
            return Ok((a.ints.len() <= INTS_MAX).then(|| a.ints.clone()));
        }
        if let Some(a) = Self::attr(n, "value_int") {
            return Ok(Some(vec![a.i]));
        }
        Ok(None)
    }

    /// Where `name` is a float constant of zeros: how it is made
    /// (`initializer`, `Constant`, `Expand` of a constant of zeros,
    /// `ConstantOfShape` of zero); `None` where it is not one.
    pub fn zeros(&self, name: &str) -> Result<Option<super::stack::Zeros>> {
        use super::stack::Zeros;
        let name = self.through_identity(name);
        let all_zero = |t: &TensorProto| -> Result<bool> {
            if t.data_type != proto::FLOAT {
                return Ok(false);
            }
            Ok(self.floats(t)?.1.iter().all(|&v| v == 0.0))
        };
        if let Some(t) = self.initializer(name) {
            return Ok(all_zero(t)?.then_some(Zeros::Initializer));
        }
        let Some((_, n)) = self.producer(name) else {
            return Ok(None);
        };
        match n.op_type.as_str() {
            "Constant" => match Self::attr(n, "value").and_then(|a| a.t.as_ref()) {
                Some(t) if all_zero(t)? => Ok(Some(Zeros::Constant)),
                _ => Ok(None),
            },
            "ConstantOfShape" => match Self::attr(n, "value").and_then(|a| a.t.as_ref()) {
                None => Ok(Some(Zeros::ConstantOfShape)),
                Some(t) if all_zero(t)? => Ok(Some(Zeros::ConstantOfShape)),
                Some(_) => Ok(None),
            },
            "Expand" if !n.input.is_empty() => {
                // A constant of zeros expanded: an initializer or a Constant
                // node (not followed further).
                let data = self.through_identity(&n.input[0]);
                let constant = match (self.initializer(data), self.producer(data)) {
                    (Some(t), _) => all_zero(t)?,
                    (None, Some((_, c))) if c.op_type == "Constant" => {
                        match Self::attr(c, "value").and_then(|a| a.t.as_ref()) {
                            Some(t) => all_zero(t)?,
                            None => false,
                        }
                    }
                    _ => false,
                };
                Ok(constant.then_some(Zeros::ExpandOfConstant))
            }
            _ => Ok(None),
        }
    }

    /// The 1-D integer vector `name` as entries of `of`'s shape (`of` of
    /// rank `rank`), where it is computed from constants and `Shape(of)` by
    /// `Slice`, `Gather`, `Concat`, `Mul`, `Reshape`, `Unsqueeze`,
    /// `Squeeze`, `Cast` and `Identity`; `None` where it is not.
    pub fn shape_vector(&self, name: &str, of: &str, rank: usize) -> Result<Option<Vec<Sym>>> {
        self.shape_vector_at(name, of, rank, 0)
    }

    fn shape_vector_at(
        &self,
        name: &str,
        of: &str,
        rank: usize,
        depth: usize,
    ) -> Result<Option<Vec<Sym>>> {
        if depth > DEPTH_MAX {
            return Ok(None);
        }
        if let Some(v) = self.int_constant(name)? {
            return Ok(Some(v.into_iter().map(Sym::Lit).collect()));
        }
        let Some((_, n)) = self.producer(name) else {
            return Ok(None);
        };
        let input = |k: usize| n.input.get(k).map(String::as_str).filter(|s| !s.is_empty());
        let sub = |k: usize| -> Result<Option<Vec<Sym>>> {
            match input(k) {
                Some(x) => self.shape_vector_at(x, of, rank, depth + 1),
                None => Ok(None),
            }
        };
        let one = |k: usize| -> Result<Option<i64>> {
            match input(k) {
                Some(x) => Ok(self.int_constant(x)?.filter(|v| v.len() == 1).map(|v| v[0])),
                None => Ok(None),
            }
        };
        let int_attr = |a: &str| Self::attr(n, a).map(|a| a.i);
        Ok(match n.op_type.as_str() {
            "Shape" => {
                if input(0).map(|x| self.through_identity(x)) != Some(of) {
                    return Ok(None);
                }
                let r = rank as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = clamp(int_attr("start").unwrap_or(0));
                let end = clamp(int_attr("end").unwrap_or(r));
                Some(
                    (start..end.max(start))
                        .map(|k| Sym::Dims(vec![k]))
                        .collect(),
                )
            }
            "Identity" | "Cast" | "Squeeze" | "Unsqueeze" | "Reshape" => {
                // Only as no-ops on a vector: Reshape to [-1] or to its own
                // length, (Un)Squeeze of a single number.
                let Some(v) = sub(0)? else { return Ok(None) };
                let keeps = match n.op_type.as_str() {
                    "Reshape" => matches!(self.int_constant(input(1).unwrap_or(""))?,
                        Some(s) if s == [-1] || s == [v.len() as i64]),
                    "Squeeze" | "Unsqueeze" => v.len() == 1,
                    "Cast" => int_attr("to").is_some_and(|to| to == i64::from(proto::INT64)),
                    _ => true,
                };
                keeps.then_some(v)
            }
            "Slice" => {
                let Some(v) = sub(0)? else { return Ok(None) };
                let (Some(start), Some(end)) = (one(1)?, one(2)?) else {
                    return Ok(None);
                };
                if input(3).is_some() && one(3)?.is_none_or(|a| a != 0 && a != -1) {
                    return Ok(None);
                }
                if input(4).is_some() && one(4)? != Some(1) {
                    return Ok(None);
                }
                let len = v.len() as i64;
                let clamp = |x: i64| (if x < 0 { x + len } else { x }).clamp(0, len) as usize;
                let (s, e) = (clamp(start), clamp(end));
                Some(v[s..e.max(s)].to_vec())
            }
            "Gather" => {
                if int_attr("axis").unwrap_or(0) != 0 {
                    return Ok(None);
                }
                let Some(v) = sub(0)? else { return Ok(None) };
                let Some(idx) = input(1)
                    .map(|x| self.int_constant(x))
                    .transpose()?
                    .flatten()
                else {
                    return Ok(None);
                };
                let len = v.len() as i64;
                let mut out = Vec::with_capacity(idx.len());
                for i in idx {
                    let i = if i < 0 { i + len } else { i };
                    if !(0..len).contains(&i) {
                        return Ok(None);
                    }
                    out.push(v[i as usize].clone());
                }
                Some(out)
            }
            "Concat" => {
                if int_attr("axis").unwrap_or(0) != 0 {
                    return Ok(None);
                }
                let mut out = Vec::new();
                for k in 0..n.input.len() {
                    match sub(k)? {
                        Some(v) if out.len() + v.len() <= INTS_MAX => out.extend(v),
                        _ => return Ok(None),
                    }
                }
                Some(out)
            }
            "Mul" => {
                let (Some(a), Some(b)) = (sub(0)?, sub(1)?) else {
                    return Ok(None);
                };
                let len = a.len().max(b.len());
                // The same lengths, or one of them 1 (broadcast); never an
                // empty one against another.
                if !(a.len() == b.len() || a.len() == 1 || b.len() == 1)
                    || a.is_empty() != b.is_empty()
                {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(len);
                for k in 0..len {
                    let x = &a[if a.len() == 1 { 0 } else { k }];
                    let y = &b[if b.len() == 1 { 0 } else { k }];
                    let p = match (x, y) {
                        (Sym::Lit(1), s) | (s, Sym::Lit(1)) => s.clone(),
                        (Sym::Lit(p), Sym::Lit(q)) => match p.checked_mul(*q) {
                            Some(v) => Sym::Lit(v),
                            None => return Ok(None),
                        },
                        (Sym::Dims(p), Sym::Dims(q)) => {
                            let mut d: Vec<usize> = p.iter().chain(q).copied().collect();
                            d.sort_unstable();
                            Sym::Dims(d)
                        }
                        _ => return Ok(None),
                    };
                    out.push(p);
                }
                Some(out)
            }
            _ => None,
        })
    }

    /// Whether node `n` is a `Transpose` with `perm`.
    pub fn is_transpose(n: &NodeProto, perm: &[i64]) -> bool {
        n.op_type == "Transpose" && Self::attr(n, "perm").is_some_and(|a| a.ints == perm)
    }

    /// The `perm` of a `Transpose` node, for a message.
    pub fn perm(n: &NodeProto) -> Vec<i64> {
        Self::attr(n, "perm")
            .map(|a| a.ints.clone())
            .unwrap_or_default()
    }
}

/// `GruError` helper shared with [`super::stack`].
pub(crate) fn refuse(origin: &str, message: impl Into<String>) -> GruError {
    super::err(origin, message)
}
