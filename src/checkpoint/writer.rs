//! Writing safetensors files so that a failed or interrupted run leaves
//! nothing behind.
//!
//! A safetensors header (with every tensor's offsets) precedes the data, but
//! tensors are computed one at a time. So computed tensors are appended to a
//! spill file as they come, copied tensors stay in the input's memory map,
//! and [`ShardWriter::finish`] writes header and data into a temporary file
//! in the target directory. [`commit`] renames the temporaries over their
//! final names only when every output of the run is complete: rename within
//! one directory is atomic, so a reader sees the old file or the whole new
//! one, never a partial one. Dropped temporaries delete themselves, and a
//! second Ctrl-C deletes them before exiting (`temp`).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde_json::{json, Value};
use tch::Tensor;
use tempfile::NamedTempFile;

use super::dtype::dtype_of;
use super::files::{copy_range, refuse_special_output, CopyError};
use super::format;
use super::plan::{dir_of, file_name, OutputPlan};
use super::reader::{read_header, Checkpoint, Entry, HeaderError, Shard};
use super::temp::{self, temp_file_in, TempFile, TempKind};
use super::{bail, error, Context as _};
use crate::error::{CheckpointErrorKind, Result};

/// A complete output file waiting under a temporary name in its target
/// directory.
pub struct PendingFile {
    temp: TempFile,
    /// Where it will be renamed to.
    pub path: PathBuf,
}

impl PendingFile {
    /// A small file (index, report) written in one go.
    pub fn with_contents(path: &Path, contents: &[u8]) -> Result<PendingFile> {
        let mut temp = temp_file_in(dir_of(path), TempKind::Small)?;
        temp.write_all(contents)
            .and_then(|()| temp.as_file().sync_all())
            .context(CheckpointErrorKind::Io, || {
                format!("writing {}", path.display())
            })?;
        Ok(PendingFile {
            temp,
            path: path.to_path_buf(),
        })
    }
}

/// Renames every pending file to its final name, all or nothing as far as
/// the filesystem allows.
///
/// Without `force`, every final path is checked to be free before the first
/// rename (and each rename refuses to replace a file that appears anyway).
/// With `force`, a file about to be replaced is first hard-linked under a
/// temporary name beside it. If a rename fails, the renames already done are
/// undone: files this commit created are removed and replaced ones are
/// renamed back from their links; the links are removed once everything is
/// in place. Each rename is atomic, so a reader sees an old file or a whole
/// new one, never a partial one.
///
/// What remains: a replaced file cannot be restored where its directory
/// does not support hard links (the error then names it), or when renaming
/// it back fails too (likewise); and a process killed outright (SIGKILL,
/// power loss) during these few milliseconds of renames can leave some
/// outputs new and others old, plus `.tch-quant-<pid>-*.bak` links. Ctrl-C and
/// SIGTERM wait for the renames (see `temp::begin_commit`).
pub fn commit(files: Vec<PendingFile>, force: bool, interrupted: &dyn Fn() -> bool) -> Result<()> {
    // A FIFO or device that appeared at a final path since the plan was
    // checked is never replaced, even with `force`. (A directory there
    // makes its rename fail, which rolls back the others.)
    for file in &files {
        if !std::fs::symlink_metadata(&file.path).is_ok_and(|m| m.is_dir()) {
            refuse_special_output(&file.path)?;
        }
    }
    if !force {
        if let Some(taken) = files
            .iter()
            .find(|f| std::fs::symlink_metadata(&f.path).is_ok())
        {
            bail!(
                OutputRefused,
                "cannot create {}: it appeared while tch-quant ran; pass --force to replace it",
                taken.path.display()
            );
        }
    }
    temp::begin_commit();
    // A signal that arrived after the last tensor still stops the run here;
    // one that arrives from now on lets the renames finish.
    if interrupted() {
        return Err(interrupted_error());
    }
    let mut placed: Vec<Placed> = Vec::new();
    for file in files {
        let path = file.path;
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let backup = if existed { backup_of(&path) } else { None };
        if let Err(e) = file.temp.persist(&path, !force) {
            // The file at `path`, if any, is still the old one.
            drop(backup);
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (it appeared while tch-quant ran; pass --force to replace it)"
            } else {
                ""
            };
            let undone = roll_back(placed);
            return Err(e).context(CheckpointErrorKind::OutputRefused, || {
                format!("cannot create {}{hint}{undone}", path.display())
            });
        }
        placed.push(Placed {
            path,
            existed,
            backup,
        });
    }
    // Dropping the backups removes the links to the replaced files.
    Ok(())
}

/// An output renamed into place by [`commit`].
struct Placed {
    path: PathBuf,
    /// Whether it replaced a file (under `--force`).
    existed: bool,
    /// A link to the replaced file, to put it back.
    backup: Option<NamedTempFile<()>>,
}

/// A hard link to `path` under a fresh temporary name in its directory
/// (the link itself when `path` is a symlink); `None` where the filesystem
/// has no hard links.
fn backup_of(path: &Path) -> Option<NamedTempFile<()>> {
    tempfile::Builder::new()
        .prefix(&temp::temp_prefix())
        .suffix(".bak")
        .make_in(dir_of(path), |link| std::fs::hard_link(path, link))
        .ok()
}

/// Undoes the renames of a failed commit, newest first; returns what to add
/// to the error message.
fn roll_back(placed: Vec<Placed>) -> String {
    if placed.is_empty() {
        return String::new();
    }
    let mut problems = Vec::new();
    for p in placed.into_iter().rev() {
        let shown = p.path.display();
        let result = match (p.existed, p.backup) {
            (false, _) => std::fs::remove_file(&p.path)
                .map_err(|e| format!("{shown} is left in place: removing it failed: {e}")),
            (true, Some(backup)) => backup
                .persist(&p.path)
                .map(drop)
                .map_err(|e| format!("{shown} was replaced; restoring it failed: {}", e.error)),
            (true, None) => Err(format!(
                "{shown} was replaced and cannot be restored (its directory has no hard links)"
            )),
        };
        if let Err(problem) = result {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        "; the outputs renamed before it were undone".into()
    } else {
        format!(
            "; undoing the outputs renamed before it: {}",
            problems.join("; ")
        )
    }
}

/// A Hugging Face style index (`metadata` and `weight_map`), pending.
pub fn write_index(
    path: &Path,
    metadata: serde_json::Map<String, Value>,
    weight_map: BTreeMap<String, String>,
) -> Result<PendingFile> {
    let index = json!({ "metadata": metadata, "weight_map": weight_map });
    let text = serde_json::to_string_pretty(&index).expect("the index serializes") + "\n";
    PendingFile::with_contents(path, text.as_bytes())
}

/// The files of one run, written one output shard per input shard (plus the
/// index of a sharded output, and anything else added), committed together.
pub struct Outputs<'a> {
    plan: &'a OutputPlan,
    pending: Vec<PendingFile>,
    weight_map: BTreeMap<String, String>,
    total_size: usize,
}

impl<'a> Outputs<'a> {
    /// Writes the output shard of each input shard: `fill` adds the tensors
    /// of input shard `i` to a fresh writer and returns the metadata of its
    /// output file.
    pub fn write_shards<F>(input: &Checkpoint, plan: &'a OutputPlan, mut fill: F) -> Result<Self>
    where
        F: FnMut(usize, &Shard, &mut ShardWriter) -> Result<BTreeMap<String, String>>,
    {
        let mut outputs = Outputs {
            plan,
            pending: Vec::new(),
            weight_map: BTreeMap::new(),
            total_size: 0,
        };
        for (i, (shard, path)) in input.shards.iter().zip(&plan.shards).enumerate() {
            let mut out = ShardWriter::new(dir_of(path))?;
            let metadata = fill(i, shard, &mut out)?;
            let name = file_name(path);
            outputs
                .weight_map
                .extend(out.names().map(|n| (n.to_string(), name.clone())));
            outputs.total_size += out.data_bytes();
            outputs.pending.push(out.finish(input, &metadata, path)?);
        }
        Ok(outputs)
    }

    /// For a sharded output, writes the index: the input index's metadata
    /// without tch-quant's entries, the `total_size` of the output shards,
    /// and `extra`.
    pub fn write_index(
        &mut self,
        input: &Checkpoint,
        extra: serde_json::Map<String, Value>,
    ) -> Result<()> {
        let Some(index) = &self.plan.index else {
            return Ok(());
        };
        let mut metadata = input.index_metadata.clone().unwrap_or_default();
        metadata.retain(|k, _| !format::is_ours(k));
        metadata.insert("total_size".into(), json!(self.total_size));
        metadata.extend(extra);
        let file = write_index(index, metadata, std::mem::take(&mut self.weight_map))?;
        self.pending.push(file);
        Ok(())
    }

    /// Another file to commit with the rest (the report).
    pub fn add(&mut self, file: PendingFile) {
        self.pending.push(file);
    }

    /// Bytes of tensor data in the output shards.
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// Renames everything into place ([`commit`]).
    pub fn commit(self) -> Result<()> {
        self.commit_unless(&|| false)
    }

    /// [`commit`](Self::commit), unless `interrupted` says the caller was
    /// asked to stop (checked once the renames can no longer be
    /// interrupted by a signal handler, see [`temp::abandon`]).
    pub fn commit_unless(self, interrupted: &dyn Fn() -> bool) -> Result<()> {
        commit(self.pending, self.plan.force, interrupted)
    }
}

enum Source {
    Spill { offset: usize, len: usize },
    Input(Entry),
}

struct Pending {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    source: Source,
}

/// Collects the tensors of one output `.safetensors` file.
pub struct ShardWriter {
    spill: BufWriter<TempFile>,
    spill_len: usize,
    entries: Vec<Pending>,
    names: HashSet<String>,
    dir: PathBuf,
}

impl ShardWriter {
    /// Starts a file that will live in `dir`; fails early when `dir` is not
    /// writable.
    pub fn new(dir: &Path) -> Result<ShardWriter> {
        Ok(ShardWriter {
            spill: BufWriter::with_capacity(1 << 20, temp_file_in(dir, TempKind::Spill)?),
            spill_len: 0,
            entries: Vec::new(),
            names: HashSet::new(),
            dir: dir.to_path_buf(),
        })
    }

    fn claim(&mut self, name: &str) -> Result<()> {
        if !self.names.insert(name.to_string()) {
            bail!(
                Unquantizable,
                "two output tensors would be named {name}; rename the input tensor that \
                 already has this name"
            );
        }
        Ok(())
    }

    /// Adds a computed tensor; returns its size in bytes.
    pub fn add_tensor(&mut self, name: &str, t: &Tensor) -> Result<usize> {
        let dtype = stored_dtype(name, t.kind())?;
        let mut bytes = Vec::new();
        append_bytes(t, &mut bytes)
            .context(CheckpointErrorKind::Io, || format!("reading back {name}"))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        self.add_bytes(name, dtype, &shape, &bytes)
    }

    /// Adds a computed tensor given as its little-endian bytes (a tensor
    /// assembled from pieces); returns its size in bytes.
    ///
    /// # Errors
    /// A name already added; bytes that are not `shape` of `dtype`; a
    /// failed write.
    pub fn add_bytes(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<usize> {
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d));
        if expected != Some(bytes.len()) {
            bail!(
                InvalidRequest,
                "tensor {name}: {} bytes do not make a {dtype:?} tensor of shape {shape:?}",
                bytes.len()
            );
        }
        self.claim(name)?;
        self.spill
            .write_all(bytes)
            .context(CheckpointErrorKind::Io, || {
                format!(
                    "writing {name} to a temporary file in {}",
                    self.dir.display()
                )
            })?;
        self.entries.push(Pending {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            source: Source::Spill {
                offset: self.spill_len,
                len: bytes.len(),
            },
        });
        self.spill_len += bytes.len();
        Ok(bytes.len())
    }

    /// Adds an input tensor, copied byte for byte at the end.
    pub fn add_copy(&mut self, entry: &Entry) -> Result<()> {
        self.claim(&entry.name)?;
        self.entries.push(Pending {
            name: entry.name.clone(),
            dtype: entry.dtype,
            shape: entry.shape.clone(),
            source: Source::Input(entry.clone()),
        });
        Ok(())
    }

    /// Names of the tensors added so far.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Bytes of tensor data added so far.
    pub fn data_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match &e.source {
                Source::Spill { len, .. } => *len,
                Source::Input(entry) => entry.num_bytes(),
            })
            .sum()
    }

    /// Writes the complete file under a temporary name beside `path`.
    pub fn finish(
        self,
        input: &Checkpoint,
        metadata: &BTreeMap<String, String>,
        path: &Path,
    ) -> Result<PendingFile> {
        let what = || format!("writing {}", path.display());
        let spill = self
            .spill
            .into_inner()
            .map_err(|e| e.into_error())
            .context(CheckpointErrorKind::Io, what)?;
        let mut entries = self.entries;
        // Largest elements first, as the safetensors crate orders them, so
        // that every tensor starts aligned to its element size.
        entries.sort_by(|a, b| {
            b.dtype
                .size()
                .cmp(&a.dtype.size())
                .then_with(|| a.name.cmp(&b.name))
        });
        let header = header_bytes(&entries, metadata);
        let mut out = temp_file_in(dir_of(path), TempKind::Output)?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, out.as_file_mut());
            w.write_all(&(header.len() as u64).to_le_bytes())
                .and_then(|()| w.write_all(&header))
                .context(CheckpointErrorKind::Io, what)?;
            for e in &entries {
                match &e.source {
                    // Spilled bytes are read back, not mapped: a map of a
                    // file someone truncates faults instead of failing.
                    Source::Spill { offset, len } => {
                        copy_range(spill.as_file(), *offset as u64, *len, &mut w).map_err(|e| {
                            let e = match e {
                                CopyError::Read(e) | CopyError::Write(e) => e,
                            };
                            error(CheckpointErrorKind::Io, format!("{}: {e}", what()))
                        })?
                    }
                    Source::Input(entry) => input.copy_to(entry, &mut w)?,
                }
            }
            w.flush().context(CheckpointErrorKind::Io, what)?;
        }
        out.as_file()
            .sync_all()
            .context(CheckpointErrorKind::Io, what)?;
        verify(out.as_file(), path)?;
        Ok(PendingFile {
            temp: out,
            path: path.to_path_buf(),
        })
    }
}

fn header_bytes(entries: &[Pending], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0;
    for e in entries {
        let len = match &e.source {
            Source::Spill { len, .. } => *len,
            Source::Input(entry) => entry.num_bytes(),
        };
        header.insert(
            e.name.clone(),
            json!({
                "dtype": e.dtype,
                "shape": e.shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut bytes = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serializes");
    // Pad with spaces (valid JSON whitespace) so that the data starts on an
    // 8-byte boundary.
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    bytes
}

/// Re-reads the written file's header: a file we cannot read back is never
/// renamed into place.
fn verify(file: &File, path: &Path) -> Result<()> {
    let len = file
        .metadata()
        .context(CheckpointErrorKind::Io, || {
            format!("re-reading {}", path.display())
        })?
        .len();
    let problem = match read_header(file, len) {
        Ok(_) => return Ok(()),
        Err(HeaderError::Read(e)) => e.to_string(),
        Err(HeaderError::Invalid(_, problem)) => problem,
    };
    bail!(
        Io,
        "the file written for {} does not read back: {problem}",
        path.display()
    );
}

/// The error of a run stopped at the caller's request.
pub(crate) fn interrupted_error() -> crate::Error {
    super::error(
        CheckpointErrorKind::Interrupted,
        "interrupted; no output was written and the input is untouched",
    )
}

/// The safetensors dtype a computed tensor of `kind` is stored as.
pub(crate) fn stored_dtype(name: &str, kind: tch::Kind) -> Result<Dtype> {
    match dtype_of(kind) {
        Some(dtype) => Ok(dtype),
        None => bail!(
            Unquantizable,
            "tensor {name} would have dtype {kind:?}, which safetensors cannot store"
        ),
    }
}

/// Appends the little-endian bytes of a tensor (any device) to `buf`.
pub(crate) fn append_bytes(
    t: &Tensor,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), tch::TchError> {
    let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let numel = t.numel();
    let start = buf.len();
    buf.resize(start + numel * t.f_kind()?.elt_size_in_bytes(), 0);
    t.f_copy_data_u8(&mut buf[start..], numel)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(dir: &Path, name: &str, contents: &str) -> PendingFile {
        PendingFile::with_contents(&dir.join(name), contents.as_bytes()).unwrap()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn no_clobber_is_checked_before_the_first_rename() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("b"), "theirs").unwrap();
        let files = vec![pending(d, "a", "new a"), pending(d, "b", "new b")];
        let err = commit(files, false, &|| false).unwrap_err();
        assert_eq!(
            err.checkpoint_kind().unwrap(),
            CheckpointErrorKind::OutputRefused
        );
        assert!(err.to_string().contains("pass --force"), "{err}");
        assert_eq!(listing(d), ["b"]);
        assert_eq!(std::fs::read_to_string(d.join("b")).unwrap(), "theirs");
    }

    #[test]
    fn a_failed_rename_undoes_the_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("replaced"), "old").unwrap();
        // A file cannot be renamed over a directory: the third rename fails.
        std::fs::create_dir(d.join("blocked")).unwrap();
        let files = vec![
            pending(d, "created", "new"),
            pending(d, "replaced", "new"),
            pending(d, "blocked", "new"),
        ];
        let err = commit(files, true, &|| false).unwrap_err();
        assert_eq!(
            err.checkpoint_kind().unwrap(),
            CheckpointErrorKind::OutputRefused
        );
        assert!(err.to_string().contains("were undone"), "{err}");
        assert_eq!(listing(d), ["blocked", "replaced"]);
        assert_eq!(std::fs::read_to_string(d.join("replaced")).unwrap(), "old");
    }

    /// A FIFO that takes a final path after the plan was checked is not
    /// replaced by a regular file, even with force, and nothing is renamed.
    #[cfg(unix)]
    #[test]
    fn a_fifo_at_a_final_path_is_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = vec![pending(d, "a", "new a"), pending(d, "b", "new b")];
        assert!(std::process::Command::new("mkfifo")
            .arg(d.join("b"))
            .status()
            .unwrap()
            .success());
        let err = commit(files, true, &|| false).unwrap_err();
        assert_eq!(
            err.checkpoint_kind().unwrap(),
            CheckpointErrorKind::OutputRefused
        );
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert_eq!(listing(d), ["b"]);
        assert!(std::fs::symlink_metadata(d.join("b"))
            .unwrap()
            .file_type()
            .is_fifo());
    }

    #[test]
    fn a_forced_commit_replaces_and_leaves_no_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), "old").unwrap();
        commit(
            vec![pending(d, "a", "new"), pending(d, "b", "new")],
            true,
            &|| false,
        )
        .unwrap();
        assert_eq!(listing(d), ["a", "b"]);
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "new");
    }
}
