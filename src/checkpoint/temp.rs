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
//!
//! A run killed outright (SIGKILL, OOM killer, power loss) deletes nothing,
//! so every temporary is named `.tch-quant-<pid>-<random><suffix>`, the
//! suffix one of `.spill`, `.safetensors.tmp`, `.tmp` and `.probe`, and, on
//! Unix, holds an exclusive `flock` while its run is alive. [`remove_stale`], run on each output directory before a run
//! starts (by [`OutputPlan::new`](super::OutputPlan::new)), deletes the
//! temporaries whose process is gone and whose lock is free: the pid alone
//! could belong to a live run in another PID namespace sharing the
//! directory, the lock alone is missing on filesystems without `flock`.

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

/// What a temporary is for, which gives its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TempKind {
    /// Computed tensors of one output shard, as they come: `.spill`.
    Spill,
    /// A finished output shard awaiting its rename: `.safetensors.tmp`.
    Output,
    /// A finished index or report awaiting its rename: `.tmp`.
    Small,
    /// The check that a directory is writable: `.probe`.
    Probe,
}

impl TempKind {
    const ALL: [TempKind; 4] = [
        TempKind::Spill,
        TempKind::Output,
        TempKind::Small,
        TempKind::Probe,
    ];

    fn suffix(self) -> &'static str {
        match self {
            TempKind::Spill => ".spill",
            TempKind::Output => ".safetensors.tmp",
            TempKind::Small => ".tmp",
            TempKind::Probe => ".probe",
        }
    }
}

/// The start of every temporary's name, with this process's id:
/// `.tch-quant-<pid>-`.
pub(crate) fn temp_prefix() -> String {
    format!(".tch-quant-{}-", std::process::id())
}

/// A registered temporary file in `dir`, readable like any file the user
/// creates (tempfile's default 0600 would survive the rename), locked for
/// as long as this process holds it open.
pub(crate) fn temp_file_in(dir: &Path, kind: TempKind) -> Result<TempFile> {
    let mut builder = tempfile::Builder::new();
    let prefix = temp_prefix();
    builder.prefix(&prefix).suffix(kind.suffix());
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
    // Where the filesystem has no flock, the pid in the name still
    // protects the file from other runs' clean-up.
    #[cfg(unix)]
    let _ = file.as_file().try_lock();
    registry.live.insert(file.path().to_path_buf());
    Ok(TempFile { inner: Some(file) })
}

/// Deletes the temporaries in `dir` that runs killed outright left behind
/// (see the module docs); returns their paths. Only regular files named as
/// temporaries are considered; a file that cannot be checked is left
/// alone. Backups of replaced outputs
/// (`.tch-quant-<pid>-*.bak`, see `writer::commit`) are never deleted: after
/// a crash during the renames one may be the only copy of a replaced file.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in listing.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(temp_owner) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
            && lock_is_free(&path)
            && std::fs::remove_file(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// The pid in a temporary's name, `.tch-quant-<pid>-<random><suffix>`.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".tch-quant-")?;
    let (pid, random) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let random = TempKind::ALL
        .iter()
        .find_map(|k| random.strip_suffix(k.suffix()))?;
    if random.is_empty() || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    // Pid 0 and values beyond pid_t are no process's (and kill(2) would
    // read them as process groups).
    pid.parse()
        .ok()
        .filter(|&p| p > 0 && i32::try_from(p).is_ok())
}

/// Whether process `pid` exists (in this PID namespace); `true` when that
/// cannot be told.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists and may be
        // signalled; `pid` is positive, so it names one process.
        let sent = unsafe { libc::kill(pid, 0) } == 0;
        sent || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Whether no process holds the lock a live run keeps on its temporaries;
/// `true` where the filesystem has no locks, `false` when the file cannot
/// be opened.
fn lock_is_free(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(path)
        else {
            return false;
        };
        !matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
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
        let mut a = temp_file_in(dir.path(), TempKind::Spill).unwrap();
        a.write_all(b"x").unwrap();
        let b = temp_file_in(dir.path(), TempKind::Small).unwrap();
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
        let c = temp_file_in(dir.path(), TempKind::Small).unwrap();
        assert!(c.persist(&target, true).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn names_carry_the_pid_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        for kind in TempKind::ALL {
            let t = temp_file_in(dir.path(), kind).unwrap();
            let name = t
                .file()
                .path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            assert!(name.starts_with(&temp_prefix()), "{name}");
            assert_eq!(temp_owner(&name), Some(std::process::id()), "{name}");
        }
        for other in [
            ".tch-quant-12-abc.bak",
            ".tch-quant-abc.spill",
            ".tch-quant--abc.spill",
            ".tch-quant-0-abc.spill",
            ".tch-quant-99999999999-abc.spill",
            ".tch-quant-12-.spill",
            ".tch-quant-12-a.b.spill",
            "model.safetensors",
        ] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
    }

    /// A dead process's temporaries go, a live one's (by pid or by lock)
    /// and anything not named as a temporary stay.
    #[cfg(unix)]
    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = [
            format!(".tch-quant-{dead}-a1b2c3.spill"),
            format!(".tch-quant-{dead}-a1b2c3.safetensors.tmp"),
            format!(".tch-quant-{dead}-zz.probe"),
        ];
        let kept = [
            format!(".tch-quant-{dead}-a1b2c3.bak"),
            format!(".tch-quant-{}-a1b2c3.spill", std::process::id()),
            "model.safetensors".to_string(),
        ];
        for name in stale.iter().chain(&kept) {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        // Locked as a live run in another PID namespace would hold it.
        let locked_name = format!(".tch-quant-{dead}-locked.tmp");
        let locked = File::create(d.join(&locked_name)).unwrap();
        locked.lock().unwrap();
        // A link to a file elsewhere is never followed or removed.
        let link_name = format!(".tch-quant-{dead}-link.tmp");
        std::os::unix::fs::symlink(d.join("model.safetensors"), d.join(&link_name)).unwrap();
        let mut removed: Vec<String> = remove_stale(d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        let mut expected = stale.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        for name in kept.iter().chain([&locked_name, &link_name]) {
            assert!(d.join(name).exists(), "{name} was removed");
        }
    }
}
