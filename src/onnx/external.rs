//! Initializers kept in external data files (ONNX's `data_location =
//! EXTERNAL`), as torch 2.15's default exporter writes them
//! (`MODEL.onnx.data`).
//!
//! A tensor's `external_data` entries name a `location` (a path relative
//! to the model's folder), an `offset` and a `length` in bytes (both
//! optional; without `length` the tensor's own size is read), and maybe a
//! `checksum` (accepted, not checked). Any other key is refused.
//!
//! The location is resolved only inside the model's folder: an absolute
//! path, a `..` component or a drive prefix is refused from its text, before
//! the file system is asked anything; then the path is resolved
//! (`canonicalize`, every symbolic link followed) and refused unless it
//! lies inside the model's folder (resolved the same way), so that a link
//! leading out is refused too; the resolved file is opened without
//! following a link as its last component, must be a regular file, and
//! `offset + length` must lie within its size before a byte is read
//! ([`crate::files::read_range`]). A `length` that is not the tensor's size
//! is refused before the file is opened.

use std::path::{Component, Path, PathBuf};

use super::proto::{self, TensorProto};
use crate::error::{shown_path, untrusted, GruError, Result};

/// Where an initializer's bytes are, from its `external_data` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalData {
    /// The file, relative to the model's folder (as the model writes it).
    pub location: String,
    /// The first byte.
    pub offset: u64,
    /// How many bytes, where the model says.
    pub length: Option<u64>,
}

/// One external read, for what `import-onnx` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRead {
    /// The location, as the model writes it.
    pub location: String,
    /// The file read (resolved).
    pub file: PathBuf,
    /// The initializer's name.
    pub tensor: String,
    /// How many bytes.
    pub bytes: u64,
}

fn err(origin: &str, message: String) -> GruError {
    GruError::Format {
        path: origin.to_string(),
        message,
    }
}

/// Whether the tensor's data is in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == proto::EXTERNAL || !t.external_data.is_empty()
}

/// The location of an external tensor, for messages: `` (`weights.bin`)``,
/// or nothing where it names none.
pub fn shown_location(t: &TensorProto) -> String {
    t.external_data
        .iter()
        .find(|e| e.key == "location")
        .map(|e| format!(" (`{}`)", untrusted(&e.value)))
        .unwrap_or_default()
}

/// The entries of an external tensor, checked: `location` present once,
/// `offset` and `length` decimal numbers, no other key but `checksum`, no
/// data inside the model as well, `data_location` saying EXTERNAL.
pub fn entries(t: &TensorProto, origin: &str) -> Result<ExternalData> {
    let name = untrusted(&t.name);
    let here = |m: String| {
        err(
            origin,
            format!("initializer `{name}`{}: {m}", shown_location(t)),
        )
    };
    if t.data_location != proto::EXTERNAL {
        return Err(here(
            "it has external_data entries but its data_location is not EXTERNAL".into(),
        ));
    }
    if !t.raw_data.is_empty() || !t.float_data.is_empty() {
        return Err(here(
            "its data is both in an external file and inside the model".into(),
        ));
    }
    let (mut location, mut offset, mut length) = (None, None, None);
    for e in &t.external_data {
        let number = |v: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                here(format!(
                    "external data `{}` is `{}`, not a number of bytes",
                    untrusted(&e.key),
                    untrusted(v)
                ))
            })
        };
        let slot_taken = match e.key.as_str() {
            "location" => location.replace(e.value.clone()).is_some(),
            "offset" => offset.replace(number(&e.value)?).is_some(),
            "length" => length.replace(number(&e.value)?).is_some(),
            "checksum" => false,
            other => {
                return Err(here(format!(
                "external data key `{}` is not supported (only location, offset, length, checksum)",
                untrusted(other)
            )))
            }
        };
        if slot_taken {
            return Err(here(format!(
                "external data key `{}` is given twice",
                untrusted(&e.key)
            )));
        }
    }
    let location = location.ok_or_else(|| here("its external data has no location".into()))?;
    Ok(ExternalData {
        location,
        offset: offset.unwrap_or(0),
        length,
    })
}

/// The file `location` names inside `folder`, resolved; refused where it
/// is absolute, climbs out with `..`, or leads out through a link.
pub fn resolve(folder: &Path, location: &str, what: &str, origin: &str) -> Result<PathBuf> {
    let refuse = |why: &str| {
        err(
            origin,
            format!(
                "{what}: external data location `{}` {why}; it must be a path inside the model's folder",
                untrusted(location)
            ),
        )
    };
    if location.is_empty() {
        return Err(refuse("is empty"));
    }
    if location.contains('\0') {
        return Err(refuse("holds a NUL character"));
    }
    let rel = Path::new(location);
    if rel.is_absolute() || rel.has_root() {
        return Err(refuse("is an absolute path"));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refuse("has a `..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is an absolute path")),
        }
    }
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let io = |p: &Path, e: std::io::Error| GruError::Io {
        path: shown_path(p),
        source: e,
    };
    let inside = folder.canonicalize().map_err(|e| io(folder, e))?;
    let joined = folder.join(rel);
    let resolved = joined.canonicalize().map_err(|e| io(&joined, e))?;
    if !resolved.starts_with(&inside) {
        return Err(refuse(&format!(
            "leads out of it through a symbolic link (to {})",
            shown_path(&resolved)
        )));
    }
    Ok(resolved)
}

/// The `want` bytes of the external tensor `t` of the model in `folder`
/// (`None`: the model was not read from a file, and nothing is read).
pub fn read(
    t: &TensorProto,
    want: u64,
    folder: Option<&Path>,
    origin: &str,
) -> Result<(ExternalRead, Vec<u8>)> {
    let e = entries(t, origin)?;
    let what = format!("initializer `{}`", untrusted(&t.name));
    let Some(folder) = folder else {
        return Err(err(
            origin,
            format!(
                "{what} is stored in an external data file{}, which is read only for a model \
                 read from its file (OnnxStack::load, import-onnx)",
                shown_location(t)
            ),
        ));
    };
    if let Some(length) = e.length {
        if length != want {
            return Err(err(
                origin,
                format!(
                    "{what}: its external data length is {length} bytes, but its shape and type make {want}"
                ),
            ));
        }
    }
    let file = resolve(folder, &e.location, &what, origin)?;
    let bytes = crate::files::read_range(&file, e.offset, want, &what)?;
    Ok((
        ExternalRead {
            location: e.location.clone(),
            file,
            tensor: t.name.clone(),
            bytes: want,
        },
        bytes,
    ))
}
