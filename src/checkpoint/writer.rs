//! Writing safetensors files so that a failed or interrupted run leaves
//! nothing behind.
//!
//! A safetensors header (with every tensor's offsets) precedes the data, but
//! tensors are computed one at a time. When every tensor's dtype and shape
//! and the metadata are known first (a [`ShardPlan`]), the header is written
//! at once and each tensor's bytes go straight to their offset in a
//! temporary file in the target directory ([`ShardWriter::planned`]).
//! Otherwise computed tensors are appended to a spill file as they come,
//! copied tensors are read from the input at the end, and
//! [`ShardWriter::finish`] writes header and data into the temporary. [`commit`] renames the temporaries over their
//! final names only when every output of the run is complete: rename within
//! one directory is atomic, so a reader sees the old file or the whole new
//! one, never a partial one. Dropped temporaries delete themselves, and a
//! second Ctrl-C deletes them before exiting (`temp`).

use std::collections::{BTreeMap, HashMap, HashSet};
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
    pub fn write_shards<F>(input: &Checkpoint, plan: &'a OutputPlan, fill: F) -> Result<Self>
    where
        F: FnMut(usize, &Shard, &mut ShardWriter) -> Result<BTreeMap<String, String>>,
    {
        Self::write_planned_shards(input, plan, |_, _| Ok(None), fill)
    }

    /// [`write_shards`](Self::write_shards), where `layout` may know the
    /// [`ShardPlan`] of the output of input shard `i` before `fill` adds
    /// its tensors: such a file is written by [`ShardWriter::planned`],
    /// each byte once, and the others through a spill file.
    pub fn write_planned_shards<P, F>(
        input: &Checkpoint,
        plan: &'a OutputPlan,
        mut layout: P,
        mut fill: F,
    ) -> Result<Self>
    where
        P: FnMut(usize, &Shard) -> Result<Option<ShardPlan>>,
        F: FnMut(usize, &Shard, &mut ShardWriter) -> Result<BTreeMap<String, String>>,
    {
        let mut outputs = Outputs {
            plan,
            pending: Vec::new(),
            weight_map: BTreeMap::new(),
            total_size: 0,
        };
        for (i, (shard, path)) in input.shards.iter().zip(&plan.shards).enumerate() {
            let mut out = match layout(i, shard)? {
                Some(shard_plan) => ShardWriter::planned(dir_of(path), shard_plan)?,
                None => ShardWriter::new(dir_of(path))?,
            };
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

/// A tensor of an output file, known before its data is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    /// Its name in the file.
    pub name: String,
    /// Its stored dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl PlannedTensor {
    /// Bytes of its data; `None` when that overflows.
    fn num_bytes(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size(), |n, &d| n.checked_mul(d))
    }
}

/// Everything an output file's header holds, known before any of its data
/// is computed: its tensors and its metadata. With it,
/// [`ShardWriter::planned`] writes each tensor once, straight into the
/// output file at its final offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// Every tensor the file will hold, in any order.
    pub tensors: Vec<PlannedTensor>,
    /// The file's `__metadata__`.
    pub metadata: BTreeMap<String, String>,
}

/// Collects the tensors of one output `.safetensors` file: either through
/// a spill file (the header is known only at the end), or, for a file whose
/// [`ShardPlan`] is known, straight into the output at each tensor's
/// offset.
pub struct ShardWriter {
    mode: Mode,
    dir: PathBuf,
}

enum Mode {
    Spill(Spill),
    Direct(Direct),
}

/// The writer of a file whose header is known only once every tensor is:
/// computed tensors are appended to a spill file as they come, and
/// [`ShardWriter::finish`] writes header and data into the output.
struct Spill {
    spill: BufWriter<TempFile>,
    spill_len: usize,
    entries: Vec<Pending>,
    names: HashSet<String>,
    /// Tensors that came in rows so far ([`ShardWriter::add_rows`]), held
    /// until their last rows come.
    partial: BTreeMap<String, Partial>,
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

/// The rows of a tensor received so far, in order.
struct Partial {
    dtype: Dtype,
    shape: Vec<usize>,
    rows: usize,
    bytes: Vec<u8>,
}

/// The writer of a file whose header was written first: every tensor has
/// its place in the output, and data goes straight there.
struct Direct {
    out: TempFile,
    /// Where the data section starts in the file.
    data_start: u64,
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

/// A tensor's place in a [`Direct`] output.
struct Slot {
    tensor: PlannedTensor,
    /// Offset within the data section.
    offset: usize,
    len: usize,
    /// Bytes written so far (whole rows, or everything).
    written: usize,
    /// An input tensor copied by [`ShardWriter::finish`].
    copy: Option<Entry>,
}

/// Largest elements first, as the safetensors crate orders them, so that
/// every tensor starts aligned to its element size; by name among equals.
fn file_order(a: (&str, Dtype), b: (&str, Dtype)) -> std::cmp::Ordering {
    b.1.size().cmp(&a.1.size()).then_with(|| a.0.cmp(b.0))
}

/// The error of two tensors added under one name.
fn duplicate_name(name: &str) -> crate::Error {
    error(
        CheckpointErrorKind::Unquantizable,
        format!(
            "two output tensors would be named {name}; rename the input tensor that already \
             has this name"
        ),
    )
}

impl ShardWriter {
    /// Starts a file that will live in `dir`, its header written once all
    /// its tensors are known; fails early when `dir` is not writable.
    pub fn new(dir: &Path) -> Result<ShardWriter> {
        Ok(ShardWriter {
            mode: Mode::Spill(Spill {
                spill: BufWriter::with_capacity(1 << 20, temp_file_in(dir, TempKind::Spill)?),
                spill_len: 0,
                entries: Vec::new(),
                names: HashSet::new(),
                partial: BTreeMap::new(),
            }),
            dir: dir.to_path_buf(),
        })
    }

    /// Starts a file that will live in `dir` whose every tensor and
    /// metadata entry `plan` gives: the header is written now, and each
    /// tensor's data, as it is added, straight to its final place (each
    /// byte written once). Every tensor added must match its planned dtype
    /// and shape, every planned tensor must be added, and
    /// [`finish`](Self::finish) must be given the planned metadata.
    ///
    /// # Errors
    /// Two planned tensors with one name; a size that overflows; a failed
    /// create or write.
    pub fn planned(dir: &Path, plan: ShardPlan) -> Result<ShardWriter> {
        let mut tensors = plan.tensors;
        tensors.sort_by(|a, b| file_order((&a.name, a.dtype), (&b.name, b.dtype)));
        let mut slots = Vec::with_capacity(tensors.len());
        let mut by_name = HashMap::with_capacity(tensors.len());
        let mut offset = 0usize;
        for tensor in tensors {
            let Some(len) = tensor.num_bytes() else {
                bail!(
                    InvalidRequest,
                    "tensor {}: shape {:?} of {:?} has more bytes than memory can address",
                    tensor.name,
                    tensor.shape,
                    tensor.dtype
                );
            };
            if by_name.insert(tensor.name.clone(), slots.len()).is_some() {
                return Err(duplicate_name(&tensor.name));
            }
            slots.push(Slot {
                tensor,
                offset,
                len,
                written: 0,
                copy: None,
            });
            offset = offset.checked_add(len).ok_or_else(|| {
                error(
                    CheckpointErrorKind::InvalidRequest,
                    "the planned tensors have more bytes than memory can address",
                )
            })?;
        }
        let header = header_bytes(
            slots
                .iter()
                .map(|s| (&s.tensor.name, s.tensor.dtype, &s.tensor.shape[..], s.len)),
            &plan.metadata,
        );
        let mut out = temp_file_in(dir, TempKind::Output)?;
        let mut start = (header.len() as u64).to_le_bytes().to_vec();
        start.extend(&header);
        out.as_file_mut()
            .write_all(&start)
            .context(CheckpointErrorKind::Io, || {
                format!("writing an output file in {}", dir.display())
            })?;
        Ok(ShardWriter {
            mode: Mode::Direct(Direct {
                out,
                data_start: start.len() as u64,
                slots,
                by_name,
                metadata: plan.metadata,
            }),
            dir: dir.to_path_buf(),
        })
    }

    /// Whether this writer was started from a [`ShardPlan`].
    pub fn is_planned(&self) -> bool {
        matches!(self.mode, Mode::Direct(_))
    }

    /// Adds a computed tensor; returns its size in bytes.
    pub fn add_tensor(&mut self, name: &str, t: &Tensor) -> Result<usize> {
        let dtype = stored_dtype(name, t.kind())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        with_bytes(t, |bytes| self.add_bytes(name, dtype, &shape, bytes))
            .context(CheckpointErrorKind::Io, || format!("reading back {name}"))?
    }

    /// Adds a computed tensor given as its little-endian bytes; returns its
    /// size in bytes. A tensor whose rows came through
    /// [`add_rows`](Self::add_rows) is replaced whole.
    ///
    /// # Errors
    /// A name already added; bytes that are not `shape` of `dtype`; in a
    /// planned file, a name, dtype or shape other than planned; a failed
    /// write.
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
        let dir = &self.dir;
        let what = || format!("writing {name} to a temporary file in {}", dir.display());
        match &mut self.mode {
            Mode::Spill(s) => {
                s.partial.remove(name);
                if !s.names.insert(name.to_string()) {
                    return Err(duplicate_name(name));
                }
                s.spill
                    .write_all(bytes)
                    .context(CheckpointErrorKind::Io, what)?;
                s.entries.push(Pending {
                    name: name.to_string(),
                    dtype,
                    shape: shape.to_vec(),
                    source: Source::Spill {
                        offset: s.spill_len,
                        len: bytes.len(),
                    },
                });
                s.spill_len += bytes.len();
            }
            Mode::Direct(d) => {
                let data_start = d.data_start;
                let slot = d.slot(name, dtype, shape)?;
                if slot.written == slot.len && slot.len > 0 {
                    return Err(duplicate_name(name));
                }
                let at = data_start + slot.offset as u64;
                slot.written = slot.len;
                write_at(d.out.as_file(), bytes, at).context(CheckpointErrorKind::Io, what)?;
            }
        }
        Ok(bytes.len())
    }

    /// Adds rows `first_row..` (of the first dim) of a computed tensor whose
    /// first dim has `rows` rows and whose other dims and dtype are those of
    /// `t`; returns the bytes added. Rows come in order, from row 0 (rows
    /// from 0 again start the tensor over); the tensor is complete once the
    /// last row has come. A planned file gets the rows at their place; a
    /// spilled one holds them until the tensor is complete.
    ///
    /// # Errors
    /// A 0-d `t`; rows out of order or past `rows`; those of
    /// [`add_bytes`](Self::add_bytes).
    pub fn add_rows(
        &mut self,
        name: &str,
        rows: usize,
        first_row: usize,
        t: &Tensor,
    ) -> Result<usize> {
        let dtype = stored_dtype(name, t.kind())?;
        let mut shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let Some(&count) = shape.first() else {
            bail!(InvalidRequest, "tensor {name}: rows of a 0-d tensor");
        };
        if first_row.checked_add(count).is_none_or(|end| end > rows) {
            bail!(
                InvalidRequest,
                "tensor {name}: rows {first_row}..{} of a tensor of {rows} rows",
                first_row.saturating_add(count)
            );
        }
        shape[0] = rows;
        let dir = &self.dir;
        let what = || format!("writing {name} to a temporary file in {}", dir.display());
        let complete = match &mut self.mode {
            Mode::Spill(s) => {
                if s.names.contains(name) {
                    return Err(duplicate_name(name));
                }
                if first_row == 0 {
                    s.partial.remove(name);
                }
                let partial = s
                    .partial
                    .entry(name.to_string())
                    .or_insert_with(|| Partial {
                        dtype,
                        shape: shape.clone(),
                        rows: 0,
                        bytes: Vec::new(),
                    });
                if partial.dtype != dtype || partial.shape != shape || partial.rows != first_row {
                    bail!(
                        InvalidRequest,
                        "tensor {name}: rows {first_row}.. of a {dtype:?} tensor of shape \
                         {shape:?} do not follow rows 0..{} of a {:?} tensor of shape {:?}",
                        partial.rows,
                        partial.dtype,
                        partial.shape
                    );
                }
                append_bytes(t, &mut partial.bytes)
                    .context(CheckpointErrorKind::Io, || format!("reading back {name}"))?;
                partial.rows += count;
                (partial.rows == rows)
                    .then(|| s.partial.remove(name))
                    .flatten()
            }
            Mode::Direct(d) => {
                let data_start = d.data_start;
                let slot = d.slot(name, dtype, &shape)?;
                let row_bytes = slot.len.checked_div(rows).unwrap_or(0);
                let at = data_start + (slot.offset + first_row * row_bytes) as u64;
                slot.written = if first_row == 0 { 0 } else { slot.written };
                if slot.written != first_row * row_bytes {
                    bail!(
                        InvalidRequest,
                        "tensor {name}: rows {first_row}.. do not follow the {} rows written",
                        slot.written / row_bytes.max(1)
                    );
                }
                slot.written += count * row_bytes;
                with_bytes(t, |bytes| write_at(d.out.as_file(), bytes, at))
                    .context(CheckpointErrorKind::Io, || format!("reading back {name}"))?
                    .context(CheckpointErrorKind::Io, what)?;
                None
            }
        };
        let added = shape[1..].iter().fold(count * dtype.size(), |n, &d| n * d);
        if let Some(partial) = complete {
            self.add_bytes(name, partial.dtype, &partial.shape, &partial.bytes)?;
        }
        Ok(added)
    }

    /// Adds an input tensor, copied byte for byte at the end.
    pub fn add_copy(&mut self, entry: &Entry) -> Result<()> {
        match &mut self.mode {
            Mode::Spill(s) => {
                if !s.names.insert(entry.name.clone()) {
                    return Err(duplicate_name(&entry.name));
                }
                s.entries.push(Pending {
                    name: entry.name.clone(),
                    dtype: entry.dtype,
                    shape: entry.shape.clone(),
                    source: Source::Input(entry.clone()),
                });
            }
            Mode::Direct(d) => {
                let slot = d.slot(&entry.name, entry.dtype, &entry.shape)?;
                if slot.copy.is_some() || slot.written > 0 {
                    return Err(duplicate_name(&entry.name));
                }
                slot.copy = Some(entry.clone());
            }
        }
        Ok(())
    }

    /// Names of the tensors added so far (of a planned file: every planned
    /// tensor).
    pub fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.mode {
            Mode::Spill(s) => Box::new(s.entries.iter().map(|e| e.name.as_str())),
            Mode::Direct(d) => Box::new(d.slots.iter().map(|s| s.tensor.name.as_str())),
        }
    }

    /// Bytes of tensor data added so far (of a planned file: planned).
    pub fn data_bytes(&self) -> usize {
        match &self.mode {
            Mode::Spill(s) => s
                .entries
                .iter()
                .map(|e| match &e.source {
                    Source::Spill { len, .. } => *len,
                    Source::Input(entry) => entry.num_bytes(),
                })
                .sum(),
            Mode::Direct(d) => d.slots.iter().map(|s| s.len).sum(),
        }
    }

    /// Writes the complete file under a temporary name beside `path`
    /// (`metadata` is its `__metadata__`, which for a planned file must be
    /// the planned one), synced to disk and its header read back.
    ///
    /// # Errors
    /// A tensor that got only some of its rows; for a planned file, a
    /// planned tensor never added or metadata other than planned; a failed
    /// copy, write or sync.
    pub fn finish(
        self,
        input: &Checkpoint,
        metadata: &BTreeMap<String, String>,
        path: &Path,
    ) -> Result<PendingFile> {
        let out = match self.mode {
            Mode::Spill(s) => s.finish(input, metadata, path)?,
            Mode::Direct(d) => d.finish(input, metadata, path)?,
        };
        let what = || format!("writing {}", path.display());
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

impl Spill {
    fn finish(
        self,
        input: &Checkpoint,
        metadata: &BTreeMap<String, String>,
        path: &Path,
    ) -> Result<TempFile> {
        if let Some((name, p)) = self.partial.iter().next() {
            bail!(
                InvalidRequest,
                "tensor {name}: only rows 0..{} of {} were added",
                p.rows,
                p.shape[0]
            );
        }
        let what = || format!("writing {}", path.display());
        let spill = self
            .spill
            .into_inner()
            .map_err(|e| e.into_error())
            .context(CheckpointErrorKind::Io, what)?;
        let mut entries = self.entries;
        entries.sort_by(|a, b| file_order((&a.name, a.dtype), (&b.name, b.dtype)));
        let header = header_bytes(
            entries.iter().map(|e| {
                let len = match &e.source {
                    Source::Spill { len, .. } => *len,
                    Source::Input(entry) => entry.num_bytes(),
                };
                (&e.name, e.dtype, &e.shape[..], len)
            }),
            metadata,
        );
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
        Ok(out)
    }
}

impl Direct {
    /// The place of tensor `name`, which must have the planned dtype and
    /// shape.
    fn slot(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&mut Slot> {
        let Some(&i) = self.by_name.get(name) else {
            bail!(
                InvalidRequest,
                "tensor {name} was not planned for this output file"
            );
        };
        let slot = &mut self.slots[i];
        if slot.tensor.dtype != dtype || slot.tensor.shape != shape {
            bail!(
                InvalidRequest,
                "tensor {name}: a {dtype:?} tensor of shape {shape:?}, where a {:?} tensor of \
                 shape {:?} was planned",
                slot.tensor.dtype,
                slot.tensor.shape
            );
        }
        Ok(slot)
    }

    fn finish(
        mut self,
        input: &Checkpoint,
        metadata: &BTreeMap<String, String>,
        path: &Path,
    ) -> Result<TempFile> {
        if *metadata != self.metadata {
            bail!(
                InvalidRequest,
                "the metadata of {} differs from the one its header was written with",
                path.display()
            );
        }
        let what = || format!("writing {}", path.display());
        for slot in &self.slots {
            let at = self.data_start + slot.offset as u64;
            match &slot.copy {
                Some(entry) => {
                    let mut w = WriterAt {
                        file: self.out.as_file(),
                        at,
                    };
                    input.copy_to(entry, &mut w)?;
                }
                None if slot.written != slot.len => bail!(
                    InvalidRequest,
                    "tensor {}: {} of its {} bytes were added",
                    slot.tensor.name,
                    slot.written,
                    slot.len
                ),
                None => {}
            }
        }
        self.out
            .as_file_mut()
            .flush()
            .context(CheckpointErrorKind::Io, what)?;
        Ok(self.out)
    }
}

/// Writes at increasing offsets of a file, from `at` on.
struct WriterAt<'a> {
    file: &'a File,
    at: u64,
}

impl Write for WriterAt<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_at(self.file, buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes all of `buf` at `offset` of `file`.
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_write(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The header of a file holding `tensors` (name, dtype, shape, bytes) in
/// this order, and `metadata`.
fn header_bytes<'a>(
    tensors: impl Iterator<Item = (&'a String, Dtype, &'a [usize], usize)>,
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0;
    for (name, dtype, shape, len) in tensors {
        header.insert(
            name.clone(),
            json!({
                "dtype": dtype,
                "shape": shape,
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

/// Calls `f` with the little-endian bytes of `t` (any device): a
/// contiguous CPU tensor's own memory, no copy; else those of a contiguous
/// CPU copy.
pub(crate) fn with_bytes<T>(
    t: &Tensor,
    f: impl FnOnce(&[u8]) -> T,
) -> std::result::Result<T, tch::TchError> {
    // Both are the tensor itself (a shallow handle) when it is already a
    // contiguous CPU tensor.
    let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let len = t.numel() * t.f_kind()?.elt_size_in_bytes();
    if len == 0 {
        return Ok(f(&[]));
    }
    // SAFETY: `t` is a contiguous CPU tensor of `len` bytes, so `data_ptr`
    // (which includes the storage offset) points at `len` initialized
    // bytes, alive while `t` is; nothing writes them during `f`, which only
    // reads them.
    let bytes = unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<u8>(), len) };
    Ok(f(bytes))
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

    /// A one-file checkpoint holding `w` (float32 [2, 3]) to copy from.
    fn input_with_w(dir: &Path) -> Checkpoint {
        let path = dir.join("in.safetensors");
        let values: Vec<u8> = (0..6u8).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 3], &values).unwrap();
        safetensors::serialize_to_file([("w", view)], &None, &path).unwrap();
        Checkpoint::open(&path).unwrap()
    }

    fn planned(name: &str, dtype: Dtype, shape: &[usize]) -> PlannedTensor {
        PlannedTensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// The tensors of the two tests below, added to `out` whole, in rows
    /// and as a copy.
    fn fill(out: &mut ShardWriter, input: &Checkpoint) {
        let codes = Tensor::from_slice(&(0..24i8).collect::<Vec<_>>()).view([4, 6]);
        out.add_rows("codes", 4, 0, &codes.narrow(0, 0, 3)).unwrap();
        out.add_rows("codes", 4, 3, &codes.narrow(0, 3, 1)).unwrap();
        let scale = Tensor::from_slice(&[0.5f32, 2.0]);
        out.add_tensor("scale", &scale).unwrap();
        out.add_bytes("zp", Dtype::BF16, &[1], &[0x80, 0x3f])
            .unwrap();
        out.add_copy(input.entry("w").unwrap()).unwrap();
    }

    fn the_plan(metadata: &BTreeMap<String, String>) -> ShardPlan {
        ShardPlan {
            tensors: vec![
                planned("zp", Dtype::BF16, &[1]),
                planned("codes", Dtype::I8, &[4, 6]),
                planned("w", Dtype::F32, &[2, 3]),
                planned("scale", Dtype::F32, &[2]),
            ],
            metadata: metadata.clone(),
        }
    }

    /// A planned file, written in place, has the bytes of the same tensors
    /// written through a spill file, and reads back.
    #[test]
    fn planned_files_are_the_spilled_files_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = input_with_w(d);
        let metadata = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let mut spilled = ShardWriter::new(d).unwrap();
        fill(&mut spilled, &input);
        let mut direct = ShardWriter::planned(d, the_plan(&metadata)).unwrap();
        assert!(direct.is_planned() && !spilled.is_planned());
        fill(&mut direct, &input);
        assert_eq!(spilled.data_bytes(), direct.data_bytes());
        let mut names: Vec<&str> = direct.names().collect();
        names.sort();
        assert_eq!(names, ["codes", "scale", "w", "zp"]);
        let files = [("a", spilled), ("b", direct)].map(|(name, out)| {
            let path = d.join(format!("{name}.safetensors"));
            out.finish(&input, &metadata, &path).unwrap()
        });
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        commit(files.into(), false, &|| false).unwrap();
        let (a, b) = (
            std::fs::read(&paths[0]).unwrap(),
            std::fs::read(&paths[1]).unwrap(),
        );
        assert_eq!(a, b);
        let st = safetensors::SafeTensors::deserialize(&b).unwrap();
        assert_eq!(
            st.tensor("codes").unwrap().data(),
            (0..24u8).collect::<Vec<_>>()
        );
        assert_eq!(st.tensor("zp").unwrap().data(), [0x80, 0x3f]);
    }

    /// Whatever does not follow the plan is an error, never a file.
    #[test]
    fn a_planned_file_refuses_what_was_not_planned() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = input_with_w(d);
        let metadata = BTreeMap::new();
        let kind = |e: crate::Error| e.checkpoint_kind().unwrap();
        let mut out = ShardWriter::planned(d, the_plan(&metadata)).unwrap();
        let wrong_shape = Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
        let wrong_dtype = Tensor::zeros([2], (tch::Kind::Double, tch::Device::Cpu));
        for err in [
            out.add_tensor("scale", &wrong_shape).unwrap_err(),
            out.add_tensor("scale", &wrong_dtype).unwrap_err(),
            out.add_tensor("other", &wrong_shape).unwrap_err(),
        ] {
            assert_eq!(kind(err), CheckpointErrorKind::InvalidRequest);
        }
        let codes = Tensor::zeros([2, 6], (tch::Kind::Int8, tch::Device::Cpu));
        out.add_rows("codes", 4, 0, &codes).unwrap();
        let err = out
            .add_rows("codes", 4, 3, &codes.narrow(0, 0, 1))
            .unwrap_err();
        assert!(err.to_string().contains("do not follow"), "{err}");
        let err = out.add_rows("codes", 4, 3, &codes).unwrap_err();
        assert!(err.to_string().contains("rows 3..5"), "{err}");
        out.add_rows("codes", 4, 2, &codes).unwrap();
        let err = out
            .add_tensor(
                "codes",
                &Tensor::zeros([4, 6], (tch::Kind::Int8, tch::Device::Cpu)),
            )
            .unwrap_err();
        assert!(err.to_string().contains("two output tensors"), "{err}");
        let err = out
            .finish(&input, &metadata, &d.join("x.safetensors"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("0 of its 8 bytes"), "{err}");

        let mut out = ShardWriter::planned(d, the_plan(&metadata)).unwrap();
        fill(&mut out, &input);
        let other = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let err = out
            .finish(&input, &other, &d.join("x.safetensors"))
            .err()
            .unwrap();
        assert_eq!(kind(err), CheckpointErrorKind::InvalidRequest);

        let twice = ShardPlan {
            tensors: vec![
                planned("a", Dtype::F32, &[1]),
                planned("a", Dtype::I8, &[1]),
            ],
            metadata,
        };
        assert!(ShardWriter::planned(d, twice)
            .err()
            .unwrap()
            .to_string()
            .contains("two output tensors"));
        // Nothing but the input is left: every failed writer removed its
        // temporary.
        assert_eq!(listing(d), ["in.safetensors"]);
    }

    /// A spilled tensor that came in rows must get all of them; rows from 0
    /// start it over.
    #[test]
    fn spilled_rows_must_complete_their_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = input_with_w(d);
        let codes = Tensor::from_slice(&(0..24i8).collect::<Vec<_>>()).view([4, 6]);
        let mut out = ShardWriter::new(d).unwrap();
        out.add_rows("codes", 4, 0, &codes.narrow(0, 0, 3)).unwrap();
        let err = out
            .add_rows("codes", 4, 2, &codes.narrow(0, 2, 1))
            .unwrap_err();
        assert!(err.to_string().contains("do not follow"), "{err}");
        let err = out
            .finish(&input, &BTreeMap::new(), &d.join("x.safetensors"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("only rows 0..3 of 4"), "{err}");
        let mut out = ShardWriter::new(d).unwrap();
        out.add_rows("codes", 4, 0, &codes.narrow(0, 0, 3)).unwrap();
        out.add_rows("codes", 4, 0, &codes.narrow(0, 0, 2)).unwrap();
        out.add_rows("codes", 4, 2, &codes.narrow(0, 2, 2)).unwrap();
        assert_eq!(out.data_bytes(), 24);
        let file = out
            .finish(&input, &BTreeMap::new(), &d.join("x.safetensors"))
            .unwrap();
        let path = file.path.clone();
        commit(vec![file], false, &|| false).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("codes").unwrap().data(),
            (0..24u8).collect::<Vec<_>>()
        );
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
