//! The files a run touches: only regular files are read or replaced, and
//! inputs are read with positional reads rather than a memory map.
//!
//! A FIFO, device or socket is refused by its type before it is opened
//! (opening a FIFO with no writer blocks; opening some devices has effects
//! of its own), and an input is opened non-blocking and checked again on
//! the open descriptor, so one swapped in between is refused too.
//!
//! Reads go through `pread` into buffers the run owns. A memory map would
//! turn an input truncated by another process into SIGBUS, which kills the
//! run with its temporary files on disk; a positional read of bytes that
//! are gone returns short instead, and the run fails with an error and
//! cleans up. Copies go through a bounded buffer, so memory stays near the
//! largest tensor.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::{bail, error};
use crate::error::{CheckpointErrorKind, Result};

/// Bytes moved per read when copying tensor data.
const COPY_CHUNK: usize = 8 << 20;

/// What a file that is not a regular file is, in words; `None` for a
/// regular file.
pub(crate) fn special_kind(metadata: &Metadata) -> Option<&'static str> {
    let t = metadata.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    if t.is_symlink() {
        return Some("a symbolic link");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Opens an input for reading after checking, without opening it, that it
/// is a regular file (through symlinks); returns the file and its length.
///
/// # Errors
/// `InvalidInput`: a missing path, a directory, a FIFO, device or socket,
/// a file that cannot be opened.
pub(crate) fn open_input(path: &Path) -> Result<(File, u64)> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!(
            InvalidInput,
            "{shown} is a directory; give a .safetensors file or an index.json"
        ),
        Ok(m) => {
            if let Some(kind) = special_kind(&m) {
                bail!(
                    InvalidInput,
                    "{shown} is {kind}, not a regular file; tch-quant reads checkpoints only \
                     from regular files"
                );
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!(InvalidInput, "{shown}: no such file")
        }
        Err(e) => bail!(InvalidInput, "cannot open {shown}: {e}"),
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO swapped in since the check must not block the open; on a
        // regular file the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        error(
            CheckpointErrorKind::InvalidInput,
            format!("cannot open {shown}: {e}"),
        )
    })?;
    let metadata = file.metadata().map_err(|e| {
        error(
            CheckpointErrorKind::InvalidInput,
            format!("cannot open {shown}: {e}"),
        )
    })?;
    if let Some(kind) = special_kind(&metadata) {
        bail!(
            InvalidInput,
            "{shown} is {kind}, not a regular file; tch-quant reads checkpoints only from \
             regular files"
        );
    }
    Ok((file, metadata.len()))
}

/// Refuses an output path that names something other than a regular file
/// (through a symlink too), which a rename would replace: `--force` onto a
/// device or FIFO never swaps it for a regular file.
///
/// # Errors
/// `OutputRefused`, naming what the path is.
pub(crate) fn refuse_special_output(path: &Path) -> Result<()> {
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    // A symlink is replaced by the rename, not written through, but one to
    // a device is as surely a mistake as the device itself.
    let target = if link.file_type().is_symlink() {
        std::fs::metadata(path).ok()
    } else {
        Some(link)
    };
    if let Some(kind) = target.as_ref().and_then(special_kind) {
        if kind == "a directory" {
            bail!(OutputRefused, "{} is a directory", path.display());
        }
        bail!(
            OutputRefused,
            "{} is {kind}, not a regular file; tch-quant writes only regular files, and does \
             not replace this one even with --force",
            path.display()
        );
    }
    Ok(())
}

/// Fills `buf` from `file` at `offset`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    let rest = buf;
                    buf = &mut rest[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Why a [`copy_range`] failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading the source.
    Read(io::Error),
    /// Writing the destination.
    Write(io::Error),
}

/// Copies `len` bytes at `offset` of `file` to `out` through a buffer of
/// at most [`COPY_CHUNK`] bytes.
pub(crate) fn copy_range(
    file: &File,
    offset: u64,
    len: usize,
    out: &mut dyn Write,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; len.min(COPY_CHUNK)];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        read_exact_at(file, &mut buf[..n], offset + done as u64).map_err(CopyError::Read)?;
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        done += n;
    }
    Ok(())
}

/// The error of an input read that failed: bytes that were there when the
/// header was checked and are gone now mean the file was truncated under
/// the run.
pub(crate) fn input_read_error(path: &Path, what: &str, e: &io::Error) -> crate::Error {
    let message = if e.kind() == io::ErrorKind::UnexpectedEof {
        format!(
            "{}: reading {what}: the file ended early; it was truncated or replaced while \
             tch-quant read it",
            path.display()
        )
    } else {
        format!("{}: reading {what}: {e}", path.display())
    };
    error(CheckpointErrorKind::InvalidInput, message)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_inputs_or_replaced_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let regular = dir.path().join("regular");
        std::fs::write(&regular, b"x").unwrap();
        let to_fifo = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        for (path, kind) in [
            (&fifo, "FIFO"),
            (&socket, "socket"),
            (&to_fifo, "FIFO"),
            (&"/dev/null".into(), "character device"),
        ] {
            let err = open_input(path).unwrap_err();
            assert_eq!(
                err.checkpoint_kind(),
                Some(CheckpointErrorKind::InvalidInput)
            );
            assert!(err.to_string().contains(kind), "{err}");
            let err = refuse_special_output(path).unwrap_err();
            assert_eq!(
                err.checkpoint_kind(),
                Some(CheckpointErrorKind::OutputRefused)
            );
            assert!(err.to_string().contains(kind), "{err}");
        }
        assert_eq!(open_input(&regular).unwrap().1, 1);
        refuse_special_output(&regular).unwrap();
        refuse_special_output(&dir.path().join("absent")).unwrap();
    }

    #[test]
    fn copies_go_through_a_bounded_buffer_and_notice_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..COPY_CHUNK + 100).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut out = Vec::new();
        copy_range(&file, 50, COPY_CHUNK + 10, &mut out).unwrap();
        assert_eq!(out, &data[50..COPY_CHUNK + 60]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = copy_range(&file, 0, 100, &mut Vec::new()).unwrap_err();
        let CopyError::Read(e) = err else {
            panic!("{err:?}")
        };
        let err = input_read_error(&path, "tensor w", &e);
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
