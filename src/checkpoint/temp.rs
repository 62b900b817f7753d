//! Temporary files that never outlive the run.
//!
//! Every temporary the tool creates (spill files, finished outputs waiting
//! for their rename, directory probes) is registered here for as long as it
//! exists. Normally each one deletes itself when dropped, as a failed or
//! interrupted run unwinds. A second Ctrl-C or SIGTERM exits without
//! unwinding; the signal handler then calls [`abandon`], which deletes every
//! registered file first. The registry's lock is held across each create,
//! delete and rename, so the handler never sees a file that exists but is
//! not registered, and never deletes one that a rename has already put in
//! place. Once the final renames have begun, the handler no longer exits: the
//! renames take milliseconds and either all land or are rolled back (see
//! `writer::commit`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tempfile::NamedTempFile;

use super::error;
use crate::error::{CheckpointErrorKind, Result};

struct Registry {
    live: BTreeSet<PathBuf>,
    committing: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeSet::new(),
    committing: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves the set consistent (every
    // operation on it is a single insert or remove).
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registered temporary file; deleted when dropped unless persisted.
pub(crate) struct TempFile {
    // `None` only once persisted or dropped.
    inner: Option<NamedTempFile>,
}

impl TempFile {
    fn file(&self) -> &NamedTempFile {
        self.inner
            .as_ref()
            .expect("a TempFile holds its file until consumed")
    }

    pub(crate) fn as_file(&self) -> &File {
        self.file().as_file()
    }

    pub(crate) fn as_file_mut(&mut self) -> &mut File {
        self.inner
            .as_mut()
            .expect("a TempFile holds its file until consumed")
            .as_file_mut()
    }

    /// Renames the file to `path`; with `noclobber`, fails rather than
    /// replace an existing file. On failure the temporary is deleted.
    pub(crate) fn persist(mut self, path: &Path, noclobber: bool) -> std::io::Result<()> {
        let Some(file) = self.inner.take() else {
            return Ok(());
        };
        let mut registry = registry();
        let temp_path = file.path().to_path_buf();
        let result = if noclobber {
            file.persist_noclobber(path).map(drop)
        } else {
            file.persist(path).map(drop)
        };
        let result = result.map_err(|e| {
            let _ = e.file.close();
            e.error
        });
        registry.live.remove(&temp_path);
        result
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.as_file_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.as_file_mut().flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(file) = self.inner.take() {
            let mut registry = registry();
            registry.live.remove(file.path());
            let _ = file.close();
        }
    }
}

/// A registered temporary file in `dir`, readable like any file the user
/// creates (tempfile's default 0600 would survive the rename).
pub(crate) fn temp_file_in(dir: &Path, suffix: &str) -> Result<TempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tch-quant-").suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut registry = registry();
    let file = builder.tempfile_in(dir).map_err(|e| {
        // tempfile's message names the random file; the directory is what
        // the user can act on.
        let cause = e.raw_os_error().map_or_else(
            || e.kind().to_string(),
            |code| std::io::Error::from_raw_os_error(code).to_string(),
        );
        error(
            CheckpointErrorKind::OutputRefused,
            format!("cannot write in directory {}: {cause}", dir.display()),
        )
    })?;
    registry.live.insert(file.path().to_path_buf());
    Ok(TempFile { inner: Some(file) })
}

/// Marks the start of the final renames: from now on [`abandon`] leaves
/// the run alone.
pub(crate) fn begin_commit() {
    registry().committing = true;
}

/// For the signal handler: unless the final renames have begun, deletes
/// every registered temporary and calls `exit` (which must not return),
/// still holding the lock so that the run creates and renames nothing more.
/// Returns only when the renames have begun.
pub fn abandon(exit: impl FnOnce()) {
    let mut registry = registry();
    if registry.committing {
        return;
    }
    for path in std::mem::take(&mut registry.live) {
        let _ = std::fs::remove_file(path);
    }
    exit();
}

/// The registered paths, for tests.
#[cfg(test)]
pub fn live() -> Vec<PathBuf> {
    registry().live.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_registered_while_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = temp_file_in(dir.path(), ".spill").unwrap();
        a.write_all(b"x").unwrap();
        let b = temp_file_in(dir.path(), ".tmp").unwrap();
        let paths: Vec<PathBuf> = live()
            .into_iter()
            .filter(|p| p.starts_with(dir.path()))
            .collect();
        assert_eq!(paths.len(), 2);
        assert!(paths.iter().all(|p| p.exists()));
        drop(a);
        let target = dir.path().join("out");
        b.persist(&target, true).unwrap();
        assert!(target.exists());
        assert!(!live().iter().any(|p| p.starts_with(dir.path())));
        assert!(paths.iter().all(|p| !p.exists()));
        // A failed no-clobber rename deletes the temporary.
        let c = temp_file_in(dir.path(), ".tmp").unwrap();
        assert!(c.persist(&target, true).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
