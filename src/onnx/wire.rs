//! What decoding an ONNX model would allocate, counted from the protobuf
//! wire format before `prost` decodes anything.
//!
//! prost grows a `Vec` element by element for every repeated field, and a
//! message of length zero (its tag and a zero: two bytes on disk) decodes
//! to a whole default message: 60 MB of empty nodes asked for a 4.8 GB
//! `Vec<NodeProto>` and aborted the process. The walk here follows the
//! messages of [`super::proto`] (`ModelProto.graph`, `GraphProto.node`,
//! `.initializer`, `.input`, `.output` and `.value_info`,
//! `NodeProto.attribute` (and the tensor an attribute holds),
//! `TensorProto.external_data`, the dimensions of a value's shape, and
//! the repeated strings and numbers in them), counts every repeated element
//! and adds up the memory decoding takes: each `Vec` at the capacity its
//! growth reaches (the next power of two, at least 4) times the in-memory
//! size of its element, each string or byte field at its length, each
//! allocation with [`ALLOCATION_OVERHEAD`] more. Fields that the subset
//! does not hold are skipped by prost without allocating, and here too.
//!
//! [`check`] refuses a model of more than [`MAX_NODES`] nodes,
//! [`MAX_INITIALIZERS`] initializers, [`MAX_ATTRIBUTES`] attributes or
//! [`MAX_VALUE_INFOS`] declared values, one
//! whose decoding would take more than [`DECODE_FLOOR`] plus
//! [`DECODE_RATIO`] times its size (no real model comes near: its weights
//! decode to their own size), and one whose decoding does not fit in host
//! memory ([`crate::memory`]).

use std::mem::size_of;

use super::proto::{
    AttributeProto, Dimension, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};
use crate::error::{GruError, Result};

/// The most nodes a model may have (a GRU model has a few; the largest
/// published ONNX graphs have tens of thousands).
pub const MAX_NODES: u64 = 1 << 20;

/// The most initializers a model may have.
pub const MAX_INITIALIZERS: u64 = 1 << 20;

/// The most attributes, over all nodes, a model may have.
pub const MAX_ATTRIBUTES: u64 = 1 << 20;

/// The most declared values (`GraphProto.input`, `.output` and
/// `.value_info` together) a model may have (an exporter declares one for
/// each of its tensors).
pub const MAX_VALUE_INFOS: u64 = 1 << 20;

/// The memory any model may take to decode, beyond [`DECODE_RATIO`] times
/// its size.
pub const DECODE_FLOOR: u64 = 64 << 20;

/// How many times its own size a model may take to decode, beyond
/// [`DECODE_FLOOR`].
pub const DECODE_RATIO: u64 = 32;

/// What the allocator adds to each allocation, in the estimate.
pub const ALLOCATION_OVERHEAD: u64 = 32;

/// The deepest nesting of groups (a deprecated wire type that prost skips)
/// that is walked; prost's own recursion limit is 100.
const MAX_GROUP_DEPTH: usize = 100;

/// What a model decodes to: counts and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// `GraphProto.node` elements (over every occurrence of the graph, which
    /// protobuf merges into one).
    pub nodes: u64,
    /// `GraphProto.initializer` elements.
    pub initializers: u64,
    /// `NodeProto.attribute` elements over all nodes.
    pub attributes: u64,
    /// `GraphProto.input`, `.output` and `.value_info` elements.
    pub value_infos: [u64; 3],
    /// The estimated bytes of memory decoding allocates.
    pub bytes: u64,
}

impl Tally {
    /// Adds `bytes` to the estimate.
    fn add(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Adds a `Vec` of `count` elements of `size` bytes.
    fn add_vec(&mut self, count: u64, size: usize) {
        if count > 0 {
            let capacity = count.max(4).checked_next_power_of_two().unwrap_or(u64::MAX);
            self.add(
                capacity
                    .saturating_mul(size as u64)
                    .saturating_add(ALLOCATION_OVERHEAD),
            );
        }
    }

    /// Adds a string or byte field of `len` bytes.
    fn add_bytes(&mut self, len: usize) {
        if len > 0 {
            self.add((len as u64).saturating_add(ALLOCATION_OVERHEAD));
        }
    }
}

/// One field's value on the wire.
enum Value<'a> {
    Varint,
    Fixed64,
    Len(&'a [u8]),
    Fixed32,
}

/// The fields of one message's bytes, in order.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("a varint runs past the end".into());
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("a varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> std::result::Result<&'a [u8], String> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(format!(
                "a field of {n} bytes where {left} are left in its message"
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    /// The key of the next field: (field number, wire type).
    fn key(&mut self) -> std::result::Result<(u64, u64), String> {
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(format!("field number {field} is invalid"));
        }
        Ok((field, wire))
    }

    /// Skips a group's fields up to its end (`field`'s end-group key).
    fn skip_group(&mut self, field: u64) -> std::result::Result<(), String> {
        let mut open = vec![field];
        while let Some(&inner) = open.last() {
            if self.pos == self.buf.len() {
                return Err("a group has no end".into());
            }
            let (f, wire) = self.key()?;
            match wire {
                3 if open.len() == MAX_GROUP_DEPTH => {
                    return Err("groups are nested too deeply".into())
                }
                3 => open.push(f),
                4 if f == inner => {
                    open.pop();
                }
                4 => return Err("a group ends that is not open".into()),
                _ => self.value(wire).map(|_| ())?,
            }
        }
        Ok(())
    }

    /// The value of a field of wire type `wire` (not a group).
    fn value(&mut self, wire: u64) -> std::result::Result<Value<'a>, String> {
        match wire {
            0 => self.varint().map(|_| Value::Varint),
            1 => self.take(8).map(|_| Value::Fixed64),
            2 => {
                let n = self.varint()?;
                self.take(n).map(Value::Len)
            }
            5 => self.take(4).map(|_| Value::Fixed32),
            w => Err(format!("wire type {w} is invalid")),
        }
    }

    /// The next field, with groups skipped; `None` at the end.
    fn next_field(&mut self) -> Option<std::result::Result<(u64, Value<'a>), String>> {
        loop {
            if self.pos == self.buf.len() {
                return None;
            }
            let step = self.key().and_then(|(field, wire)| match wire {
                3 => self.skip_group(field).map(|_| None),
                4 => Err("a group ends that is not open".into()),
                _ => self.value(wire).map(|v| Some((field, v))),
            });
            match step {
                Ok(None) => continue,
                Ok(Some(fv)) => return Some(Ok(fv)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

type Walk = std::result::Result<(), String>;

/// Calls `f` on every field of `buf`.
fn each<'a>(buf: &'a [u8], mut f: impl FnMut(u64, Value<'a>) -> Walk) -> Walk {
    let mut fields = Fields::new(buf);
    while let Some(field) = fields.next_field() {
        let (number, value) = field?;
        f(number, value)?;
    }
    Ok(())
}

/// The number of elements of a packed repeated field of varints.
fn packed_varints(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b < 0x80).count() as u64
}

/// A repeated number field: packed (a length) or one element per field.
fn numbers(value: &Value<'_>, element: usize) -> u64 {
    match (value, element) {
        (Value::Len(body), 4) => body.len() as u64 / 4,
        (Value::Len(body), _) => packed_varints(body),
        _ => 1,
    }
}

/// A `StringStringEntryProto`.
fn entry(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| {
        if let (1 | 2, Value::Len(s)) = (field, v) {
            t.add_bytes(s.len());
        }
        Ok(())
    })
}

/// A `TensorProto`.
fn tensor(buf: &[u8], t: &mut Tally) -> Walk {
    let (mut dims, mut floats, mut entries) = (0u64, 0u64, 0u64);
    let (mut int32s, mut int64s) = (0u64, 0u64);
    each(buf, |field, v| {
        match (field, &v) {
            (1, Value::Len(_) | Value::Varint) => dims += numbers(&v, 8),
            (4, Value::Len(_) | Value::Fixed32) => floats += numbers(&v, 4),
            (5, Value::Len(_) | Value::Varint) => int32s += numbers(&v, 8),
            (7, Value::Len(_) | Value::Varint) => int64s += numbers(&v, 8),
            (8 | 9, Value::Len(s)) => t.add_bytes(s.len()),
            (13, Value::Len(s)) => {
                entries += 1;
                entry(s, t)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    t.add_vec(dims, size_of::<i64>());
    t.add_vec(floats, size_of::<f32>());
    t.add_vec(int32s, size_of::<i32>());
    t.add_vec(int64s, size_of::<i64>());
    t.add_vec(entries, size_of::<StringStringEntryProto>());
    Ok(())
}

/// A `TensorShapeProto.Dimension`.
fn dimension(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| {
        if let (2, Value::Len(s)) = (field, v) {
            t.add_bytes(s.len());
        }
        Ok(())
    })
}

/// A `TensorShapeProto`.
fn shape(buf: &[u8], t: &mut Tally) -> Walk {
    let mut dims = 0u64;
    each(buf, |field, v| {
        if let (1, Value::Len(s)) = (field, v) {
            dims += 1;
            dimension(s, t)?;
        }
        Ok(())
    })?;
    t.add_vec(dims, size_of::<Dimension>());
    Ok(())
}

/// A `TypeProto.Tensor`.
fn tensor_type(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| match (field, v) {
        (2, Value::Len(s)) => shape(s, t),
        _ => Ok(()),
    })
}

/// A `TypeProto` (only its tensor type is decoded).
fn type_proto(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| match (field, v) {
        (1, Value::Len(s)) => tensor_type(s, t),
        _ => Ok(()),
    })
}

/// A `ValueInfoProto`.
fn value_info(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| match (field, v) {
        (1, Value::Len(s)) => {
            t.add_bytes(s.len());
            Ok(())
        }
        (2, Value::Len(s)) => type_proto(s, t),
        _ => Ok(()),
    })
}

/// An `AttributeProto`.
fn attribute(buf: &[u8], t: &mut Tally) -> Walk {
    let (mut floats, mut ints, mut strings) = (0u64, 0u64, 0u64);
    each(buf, |field, v| {
        match (field, &v) {
            (1 | 4, Value::Len(s)) => t.add_bytes(s.len()),
            (5, Value::Len(s)) => tensor(s, t)?,
            (7, Value::Len(_) | Value::Fixed32) => floats += numbers(&v, 4),
            (8, Value::Len(_) | Value::Varint) => ints += numbers(&v, 8),
            (9, Value::Len(s)) => {
                strings += 1;
                t.add_bytes(s.len());
            }
            _ => {}
        }
        Ok(())
    })?;
    t.add_vec(floats, size_of::<f32>());
    t.add_vec(ints, size_of::<i64>());
    t.add_vec(strings, size_of::<Vec<u8>>());
    Ok(())
}

/// A `NodeProto`.
fn node(buf: &[u8], t: &mut Tally) -> Walk {
    let (mut inputs, mut outputs, mut attributes) = (0u64, 0u64, 0u64);
    each(buf, |field, v| {
        if let Value::Len(s) = v {
            match field {
                1 => inputs += 1,
                2 => outputs += 1,
                5 => {
                    attributes += 1;
                    return attribute(s, t);
                }
                3 | 4 | 7 => {}
                _ => return Ok(()),
            }
            t.add_bytes(s.len());
        }
        Ok(())
    })?;
    t.add_vec(inputs, size_of::<String>());
    t.add_vec(outputs, size_of::<String>());
    t.add_vec(attributes, size_of::<AttributeProto>());
    t.attributes = t.attributes.saturating_add(attributes);
    Ok(())
}

/// A `GraphProto` (every occurrence adds to the one graph's lists).
fn graph(buf: &[u8], t: &mut Tally) -> Walk {
    each(buf, |field, v| {
        if let Value::Len(s) = v {
            match field {
                1 => {
                    t.nodes += 1;
                    node(s, t)?;
                }
                2 => t.add_bytes(s.len()),
                5 => {
                    t.initializers += 1;
                    tensor(s, t)?;
                }
                11..=13 => {
                    t.value_infos[field as usize - 11] += 1;
                    value_info(s, t)?;
                }
                _ => {}
            }
        }
        Ok(())
    })
}

/// What decoding the `ModelProto` in `bytes` would allocate; an error where
/// its wire format is broken (prost would refuse it too).
pub fn tally(bytes: &[u8]) -> std::result::Result<Tally, String> {
    let mut t = Tally::default();
    each(bytes, |field, v| match (field, v) {
        (2 | 3, Value::Len(s)) => {
            t.add_bytes(s.len());
            Ok(())
        }
        (7, Value::Len(s)) => graph(s, &mut t),
        _ => Ok(()),
    })?;
    t.add_vec(t.nodes, size_of::<NodeProto>());
    t.add_vec(t.initializers, size_of::<TensorProto>());
    for count in t.value_infos {
        t.add_vec(count, size_of::<ValueInfoProto>());
    }
    Ok(t)
}

/// Refuses a model whose decoding would allocate more than a model can
/// need (see the module's documentation), before anything is decoded.
pub fn check(bytes: &[u8], origin: &str) -> Result<Tally> {
    let err = |message: String| GruError::Format {
        path: origin.to_string(),
        message,
    };
    let t = tally(bytes).map_err(|e| err(format!("not a valid ONNX model: {e}")))?;
    for (count, what, max) in [
        (t.nodes, "nodes", MAX_NODES),
        (t.initializers, "initializers", MAX_INITIALIZERS),
        (t.attributes, "attributes", MAX_ATTRIBUTES),
        (
            t.value_infos.iter().fold(0u64, |a, &b| a.saturating_add(b)),
            "declared values (graph inputs, outputs and value_info)",
            MAX_VALUE_INFOS,
        ),
    ] {
        if count > max {
            return Err(err(format!(
                "the ONNX model has {count} {what}; this reader reads at most {max}"
            )));
        }
    }
    let len = bytes.len() as u64;
    let limit = DECODE_FLOOR.saturating_add(DECODE_RATIO.saturating_mul(len));
    if t.bytes > limit {
        return Err(err(format!(
            "decoding the ONNX model would take about {} bytes of memory, more than a model \
             of {len} bytes can need (at most {limit})",
            t.bytes
        )));
    }
    crate::memory::check_host(
        &format!("decoding the ONNX model {origin}"),
        t.bytes.saturating_add(len),
    )?;
    Ok(t)
}
