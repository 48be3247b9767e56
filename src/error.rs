//! The one error type of the crate.
//!
//! Every failure that user data can cause comes back as a [`GruError`]; the
//! crate never panics on user input. Variants that concern a tensor name it,
//! and say what was expected and what came.

use std::fmt;

/// A shape, printed the way PyTorch prints one: `(3, 4, 5)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() == 1 {
            write!(f, ",")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&[usize]> for Shape {
    fn from(s: &[usize]) -> Self {
        Shape(s.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(s: [usize; N]) -> Self {
        Shape(s.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(s: Vec<usize>) -> Self {
        Shape(s)
    }
}

/// Everything that can go wrong in gru-wgpu.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GruError {
    /// A configuration that no GRU can have (a size of zero, a dropout outside [0, 1), ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A size of zero in the data (T, B, I or H).
    #[error("`{name}` has a size of zero in dimension {dim} (shape {shape}); every size must be at least 1")]
    ZeroSize {
        name: String,
        dim: &'static str,
        shape: Shape,
    },

    /// An array or tensor whose shape does not match the configuration.
    #[error("{}`{name}`: expected shape {expected}, got {actual}", in_file(.file))]
    ShapeMismatch {
        name: String,
        expected: Shape,
        actual: Shape,
        /// The file the tensor came from, where it came from one.
        file: Option<String>,
    },

    /// An array with the wrong number of dimensions.
    #[error("`{name}`: expected shape {expected}, got {actual}")]
    Rank {
        name: String,
        expected: String,
        actual: Shape,
    },

    /// A raw slice or device buffer of the wrong length.
    #[error("`{name}`: expected {expected} {unit}, got {actual}")]
    LengthMismatch {
        name: String,
        expected: u64,
        actual: u64,
        unit: &'static str,
    },

    /// A tensor the configuration needs is not in the file.
    #[error("{}missing tensor `{name}` (expected shape {expected})", in_file(.file))]
    MissingTensor {
        name: String,
        expected: Shape,
        /// The file, where the tensors came from one.
        file: Option<String>,
    },

    /// A tensor in the file that the configuration has no place for (its
    /// name, the file's, is quoted through [`untrusted`]).
    #[error(
        "{}unexpected tensor `{}` with shape {shape}: the configuration has no such parameter",
        in_file(.file),
        untrusted(.name)
    )]
    UnexpectedTensor {
        name: String,
        shape: Shape,
        /// The file, where the tensors came from one.
        file: Option<String>,
    },

    /// A tensor of a dtype that cannot be read as floating point, or not
    /// the one its format prescribes.
    #[error("{}tensor `{name}`: expected dtype {expected}, got {actual}", in_file(.file))]
    DType {
        name: String,
        expected: &'static str,
        actual: String,
        /// The file, where the tensor came from one.
        file: Option<String>,
    },

    /// An index past the end of what it indexes (a layer, a direction).
    #[error("{what} {index} is out of range: there are {len}")]
    OutOfRange {
        what: String,
        index: usize,
        len: usize,
    },

    /// A file that is not valid safetensors, or truncated.
    #[error("{path}: not a valid safetensors file: {message}")]
    SafeTensors { path: String, message: String },

    /// A reference file whose metadata is missing or malformed.
    #[error("{path}: {message}")]
    Format { path: String, message: String },

    /// A file that cannot be what it is read as: not a regular file (a
    /// FIFO, a device, a folder), or larger than any file of its kind can
    /// be. Refused before it is read.
    #[error("{path}: {reason}")]
    FileRefused { path: String, reason: String },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// Backward called with no forward step left on the tape, or a tape used wrongly.
    #[error("tape: {0}")]
    Tape(String),

    /// No GPU adapter could be found or matched.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The adapter refused the device request.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),

    /// Work that exceeds a limit of the device and cannot be split to fit.
    #[error(
        "{what} needs {requested} {unit} but the device allows at most {limit} ({limit_name})"
    )]
    LimitExceeded {
        what: String,
        requested: u64,
        limit: u64,
        limit_name: &'static str,
        /// What `requested` and `limit` count: `bytes`, `elements`, ...
        unit: &'static str,
    },

    /// Work whose host memory would exceed what this machine or process has
    /// (checked before anything is allocated; see [`crate::memory`]).
    #[error("{what} needs {requested} bytes of host memory but {limit_name} is {limit} bytes")]
    HostMemory {
        what: String,
        requested: u64,
        limit: u64,
        /// `the machine's memory (MemTotal)` or `the address-space limit (ulimit -v)`.
        limit_name: &'static str,
    },

    /// The device ran out of memory.
    #[error("the GPU ran out of memory: {0}")]
    OutOfMemory(String),

    /// The device was lost; the context cannot be used any more.
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    /// Any other error the GPU reported (a validation or internal error).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A backward given a tape made before the model's parameters changed
    /// (`set_params`, `update`, an optimiser step): the tape's gates and
    /// states belong to the old parameters, so its gradients would be wrong.
    /// PyTorch raises in this case too (its tensors' version counters).
    #[error(
        "tape: the parameters changed since the forward that made this tape \
         (parameter version {recorded} then, {current} now); run the forward again"
    )]
    StaleTape { recorded: u64, current: u64 },

    /// A feature that this part of gru-wgpu does not implement yet, such as
    /// the reset-before form or variable lengths on the GPU: refused, never
    /// computed with the wrong math.
    #[error("{feature} is not implemented {place} yet")]
    NotImplemented {
        feature: String,
        place: &'static str,
    },

    /// A device buffer handed to a context whose device did not make it
    /// (the buffer of another [`GpuContext`](crate::gpu::GpuContext), or of
    /// another wgpu device): refused before any work, since wgpu would read
    /// some buffer of this device in its place. `name` is the argument.
    #[error(
        "`{name}`: the buffer was made by another device, not by this context's; \
         upload the data with this context (or make the buffer on its `device()`)"
    )]
    ForeignBuffer { name: String },

    /// What was asked for needs a feature the adapter does not have.
    #[error("{what} needs the adapter feature {feature}, which {adapter} does not have")]
    MissingFeature {
        what: String,
        feature: &'static str,
        adapter: String,
    },
}

/// `"path: "` for an error about a tensor of a file, else nothing.
fn in_file(file: &Option<String>) -> String {
    file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

/// The most characters of untrusted text that [`untrusted`] quotes.
pub const QUOTE_MAX: usize = 200;

/// Untrusted text (a node or tensor name, a metadata value, a file name
/// that a model or a file holds) as a message may quote it: control
/// characters (the terminal's escape sequences among them) and the
/// invisible ones that reorder or hide text are written as `\u{1b}`, and past
/// [`QUOTE_MAX`] characters the rest is left out, said as `… (N more bytes)`.
pub fn untrusted(text: &str) -> String {
    escaped(text, QUOTE_MAX)
}

/// A path as messages show it: [`untrusted`]'s escapes, uncut (a path the
/// user gave, or one joined from a name a file holds).
pub fn shown_path(path: &std::path::Path) -> String {
    escaped(&path.display().to_string(), usize::MAX)
}

/// `text` with its control and hiding characters escaped, cut after `max`
/// characters.
fn escaped(text: &str, max: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(4 * QUOTE_MAX));
    for (count, (at, c)) in text.char_indices().enumerate() {
        if count == max {
            let _ = write!(out, "… ({} more bytes)", text.len() - at);
            break;
        }
        if c.is_control() || hides_text(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`untrusted`] on bytes that should be UTF-8 (invalid sequences become
/// U+FFFD).
pub fn untrusted_bytes(bytes: &[u8]) -> String {
    untrusted(&String::from_utf8_lossy(bytes))
}

/// Characters that print nothing but change how text around them shows:
/// zero-width ones and the bidirectional overrides and isolates.
fn hides_text(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}'
    )
}

/// The crate's result type.
pub type Result<T, E = GruError> = std::result::Result<T, E>;

impl GruError {
    /// A shape mismatch for `name`.
    pub fn shape(
        name: impl Into<String>,
        expected: impl Into<Shape>,
        actual: impl Into<Shape>,
    ) -> Self {
        GruError::ShapeMismatch {
            name: name.into(),
            expected: expected.into(),
            actual: actual.into(),
            file: None,
        }
    }

    /// The same error, naming `path` as the file its tensor came from (for
    /// the errors about one tensor of a file; others are returned as they are).
    pub fn in_file(mut self, path: &str) -> Self {
        if let GruError::ShapeMismatch { file, .. }
        | GruError::MissingTensor { file, .. }
        | GruError::UnexpectedTensor { file, .. }
        | GruError::DType { file, .. } = &mut self
        {
            file.get_or_insert_with(|| path.to_string());
        }
        self
    }
}

/// Checks that `actual` equals `expected` and that no size in it is zero.
///
/// `dims` names the dimensions (for instance `["T", "B", "I"]`) for the
/// zero-size message.
pub fn check_shape(
    name: &str,
    expected: &[usize],
    actual: &[usize],
    dims: &[&'static str],
) -> Result<()> {
    if let Some(i) = actual.iter().position(|&d| d == 0) {
        return Err(GruError::ZeroSize {
            name: name.to_string(),
            dim: dims.get(i).copied().unwrap_or("?"),
            shape: Shape(actual.to_vec()),
        });
    }
    if expected != actual {
        return Err(GruError::shape(name, expected.to_vec(), actual.to_vec()));
    }
    Ok(())
}

/// The number of elements of `shape`, or an error where the product does not
/// fit in memory's address space.
pub fn elements(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| GruError::LimitExceeded {
            what: format!("`{name}` of shape {}", Shape(shape.to_vec())),
            requested: u64::MAX,
            limit: usize::MAX as u64,
            limit_name: "the address space",
            unit: "elements (more than fit)",
        })
}
