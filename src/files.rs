//! Reading the files a user names: regular files only, and never more bytes
//! than a file of its kind can hold.
//!
//! Every file the crate reads goes through here. A FIFO, a device such as
//! `/dev/zero`, a socket or a folder is refused before anything is read
//! from it (on Unix the file is opened with `O_NONBLOCK`, so that opening a
//! FIFO no one writes to cannot hang, and its kind is read from the opened
//! handle); a file larger than its kind can be is refused from its size,
//! and the read itself stops one byte past the cap, so that a file that
//! grows meanwhile (or one whose size the system does not report, as in
//! `/proc`) cannot make it read more. What is read must fit in host memory
//! ([`crate::memory`]).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{GruError, Result};

/// The most an ONNX model can be: protobuf's limit on one message, 2 GiB
/// (larger models keep their weights in external data files, read with
/// [`read_range`]).
pub const ONNX_MAX: u64 = 2 << 30;

/// The most a plan cache file can be: each entry is well under a kilobyte,
/// and a file holds one per shape bucket tuned on one adapter.
pub const PLAN_CACHE_MAX: u64 = 8 << 20;

/// The most a results file of `bench --compare` (JSON lines) can be.
pub const BENCH_RECORDS_MAX: u64 = 64 << 20;

/// The most a system file read for information (`/proc/meminfo`) can be.
pub const SYSTEM_FILE_MAX: u64 = 1 << 20;

/// The largest header a safetensors file can have (the `safetensors`
/// crate's own limit, `MAX_HEADER_SIZE`).
pub const SAFETENSORS_HEADER_MAX: u64 = 100_000_000;

/// What kind of file a non-regular file is, for the message.
fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

/// A refusal of the file at `shown`.
fn refused(shown: &str, reason: String) -> GruError {
    GruError::FileRefused {
        path: shown.to_string(),
        reason,
    }
}

/// Opens `path` for reading where it is a regular file; returns the file
/// and its size.
fn open_regular(path: &Path, shown: &str) -> Result<(File, u64)> {
    open_regular_with(path, shown, false)
}

/// [`open_regular`], refusing a symbolic link as the last component where
/// `no_follow` (on Unix: `O_NOFOLLOW`).
fn open_regular_with(path: &Path, shown: &str, no_follow: bool) -> Result<(File, u64)> {
    let io = |e: std::io::Error| GruError::Io {
        path: shown.to_string(),
        source: e,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO opens at once instead of waiting for a writer; reading a
        // regular file is the same either way.
        let nofollow = if no_follow { libc::O_NOFOLLOW } else { 0 };
        options.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    #[cfg(not(unix))]
    let _ = no_follow;
    let file = options.open(path).map_err(|e| {
        // Windows cannot open a folder for reading: say what it is.
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => refused(
                shown,
                format!("not a regular file ({})", kind(m.file_type())),
            ),
            _ => io(e),
        }
    })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(refused(
            shown,
            format!("not a regular file ({})", kind(meta.file_type())),
        ));
    }
    Ok((file, meta.len()))
}

/// Appends at most `count` more bytes of `file` to `out`.
fn read_more(file: &mut File, count: u64, out: &mut Vec<u8>, shown: &str) -> Result<()> {
    file.take(count)
        .read_to_end(out)
        .map(|_| ())
        .map_err(|e| GruError::Io {
            path: shown.to_string(),
            source: e,
        })
}

/// The bytes of the regular file `path`, refused where it holds more than
/// `cap` bytes: `what` names what it is read as in the message ("an ONNX
/// model", "a plan cache").
pub fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    let shown = crate::error::shown_path(path);
    let (mut file, len) = open_regular(path, &shown)?;
    let too_large = |len: String| {
        refused(
            &shown,
            format!("{len} bytes, more than {what} can be (at most {cap} bytes)"),
        )
    };
    if len > cap {
        return Err(too_large(len.to_string()));
    }
    crate::memory::check_host(&format!("reading {shown}"), len)?;
    let mut bytes = Vec::with_capacity(len as usize);
    read_more(&mut file, cap.saturating_add(1), &mut bytes, &shown)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(format!("more than {cap}")));
    }
    Ok(bytes)
}

/// `length` bytes of the regular file `path` from byte `offset` (an ONNX
/// model's external data): `offset + length` is checked against the file's
/// size, and the bytes against host memory, before anything is read. `what`
/// names the bytes in messages (`` initializer `W` ``). On Unix a symbolic
/// link as `path`'s last component is refused (give the resolved path).
pub fn read_range(path: &Path, offset: u64, length: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let shown = crate::error::shown_path(path);
    let (mut file, len) = open_regular_with(path, &shown, true)?;
    let end = offset.checked_add(length);
    if end.is_none_or(|end| end > len) {
        return Err(refused(
            &shown,
            format!(
                "{what}: bytes {offset} to {offset} + {length} are past the end of the file ({len} bytes)"
            ),
        ));
    }
    crate::memory::check_host(&format!("reading {what} from {shown}"), length)?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| GruError::Io {
            path: shown.clone(),
            source: e,
        })?;
    let mut bytes = Vec::with_capacity(length as usize);
    read_more(&mut file, length, &mut bytes, &shown)?;
    if bytes.len() as u64 != length {
        return Err(refused(
            &shown,
            format!(
                "{what}: {} bytes could be read of the {length} from byte {offset} (the file shrank)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// The text of a system file read for information (`/proc/meminfo`), at
/// most [`SYSTEM_FILE_MAX`] bytes; `None` where it cannot be read. Host
/// memory is not checked first: the check itself reads such files.
pub fn read_system(path: &Path) -> Option<String> {
    let shown = path.display().to_string();
    let (mut file, _) = open_regular(path, &shown).ok()?;
    let mut bytes = Vec::new();
    read_more(&mut file, SYSTEM_FILE_MAX, &mut bytes, &shown).ok()?;
    String::from_utf8(bytes).ok()
}

/// The bytes of the safetensors file `path`, read only as far as its
/// header describes: its size must be the header's 8-byte length, the
/// header, and the tensors' bytes that the header lists (a sparse file of
/// gigabytes behind a small header is refused from its size, unread).
///
/// Where the header itself is not valid, only the bytes read so far come
/// back (the header's length, and the header where it fits in the file):
/// they are enough for the safetensors parser to give its own error.
pub fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let shown = crate::error::shown_path(path);
    let (mut file, len) = open_regular(path, &shown)?;
    let mut bytes = Vec::new();
    read_more(&mut file, 8, &mut bytes, &shown)?;
    let Ok(n) = <[u8; 8]>::try_from(&bytes[..]).map(u64::from_le_bytes) else {
        return Ok(bytes);
    };
    if n > SAFETENSORS_HEADER_MAX || n > len.saturating_sub(8) {
        return Ok(bytes);
    }
    read_more(&mut file, n, &mut bytes, &shown)?;
    let header = std::str::from_utf8(&bytes[8..])
        .ok()
        .and_then(|h| serde_json::from_str::<safetensors::tensor::Metadata>(h).ok());
    let Some(header) = header else {
        return Ok(bytes);
    };
    let want = (8 + n).saturating_add(header.data_len() as u64);
    if want != len {
        return Err(GruError::SafeTensors {
            path: shown,
            message: format!(
                "the file has {len} bytes but its header describes {want} \
                 (8 + a header of {n} + tensors of {})",
                header.data_len()
            ),
        });
    }
    crate::memory::check_host(&format!("reading {shown}"), len)?;
    bytes.reserve_exact((len - 8 - n) as usize);
    // One byte more than described: a file that grew is refused by the parser.
    read_more(&mut file, len - 8 - n + 1, &mut bytes, &shown)?;
    Ok(bytes)
}
