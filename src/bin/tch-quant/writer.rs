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
//! one, never a partial one. Dropped temporaries delete themselves.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::Dtype;
use serde_json::{json, Value};
use tch::Tensor;
use tempfile::NamedTempFile;

use crate::checkpoint::{check_header, Checkpoint, Entry};
use crate::convert::{bytes_of, dtype_of};
use crate::exit::{fail, Categorize, Category, Failure, Result};

/// A complete output file waiting under a temporary name in its target
/// directory.
pub struct PendingFile {
    temp: NamedTempFile,
    pub path: PathBuf,
}

impl PendingFile {
    /// A small file (index, report) written in one go.
    pub fn with_contents(path: &Path, contents: &[u8]) -> Result<PendingFile> {
        let mut temp = temp_file_in(dir_of(path), ".tmp")?;
        temp.write_all(contents)
            .and_then(|()| temp.as_file().sync_all())
            .fail_with(Category::Internal, || format!("writing {}", path.display()))?;
        Ok(PendingFile {
            temp,
            path: path.to_path_buf(),
        })
    }
}

/// Renames every pending file to its final name. Without `force`, a file
/// that appeared at a final path since the run started is not replaced.
pub fn commit(files: Vec<PendingFile>, force: bool) -> Result<()> {
    for file in files {
        let path = file.path;
        let persisted = if force {
            file.temp.persist(&path).map(drop)
        } else {
            file.temp.persist_noclobber(&path).map(drop)
        };
        if let Err(e) = persisted {
            let hint = if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                " (it appeared while tch-quant ran; pass --force to replace it)"
            } else {
                ""
            };
            return Err(e.error).fail_with(Category::Output, || {
                format!("cannot create {}{hint}", path.display())
            });
        }
    }
    Ok(())
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// The directory a path lives in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file in `dir`, readable like any file the user creates
/// (tempfile's default 0600 would survive the rename).
pub fn temp_file_in(dir: &Path, suffix: &str) -> Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tch-quant-").suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir).map_err(|e| {
        // tempfile's message names the random file; the directory is what
        // the user can act on.
        let cause = e.raw_os_error().map_or_else(
            || e.kind().to_string(),
            |code| std::io::Error::from_raw_os_error(code).to_string(),
        );
        Failure::new(
            Category::Output,
            format!("cannot write in directory {}: {cause}", dir.display()),
        )
    })
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
    spill: BufWriter<NamedTempFile>,
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
            spill: BufWriter::with_capacity(1 << 20, temp_file_in(dir, ".spill")?),
            spill_len: 0,
            entries: Vec::new(),
            names: HashSet::new(),
            dir: dir.to_path_buf(),
        })
    }

    fn claim(&mut self, name: &str) -> Result<()> {
        if !self.names.insert(name.to_string()) {
            fail!(
                Category::Tensor,
                "two output tensors would be named {name}; rename the input tensor that \
                 already has this name"
            );
        }
        Ok(())
    }

    /// Adds a computed tensor; returns its size in bytes.
    pub fn add_tensor(&mut self, name: &str, t: &Tensor) -> Result<usize> {
        self.claim(name)?;
        let Some(dtype) = dtype_of(t.kind()) else {
            fail!(
                Category::Tensor,
                "tensor {name} would have dtype {:?}, which safetensors cannot store",
                t.kind()
            );
        };
        let bytes = bytes_of(t).fail_with(Category::Internal, || format!("reading back {name}"))?;
        self.spill
            .write_all(&bytes)
            .fail_with(Category::Internal, || {
                format!(
                    "writing {name} to a temporary file in {}",
                    self.dir.display()
                )
            })?;
        self.entries.push(Pending {
            name: name.to_string(),
            dtype,
            shape: t.size().iter().map(|&d| d as usize).collect(),
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
            .fail_with(Category::Internal, what)?;
        // SAFETY: the spill file is private to this process (a fresh
        // temporary) and no longer written.
        let spill_map = match self.spill_len {
            0 => None,
            _ => Some(unsafe { Mmap::map(spill.as_file()) }.fail_with(Category::Internal, what)?),
        };
        let spilled: &[u8] = spill_map.as_deref().unwrap_or_default();
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
        let mut out = temp_file_in(dir_of(path), ".safetensors.tmp")?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, out.as_file_mut());
            let mut write = |bytes: &[u8]| w.write_all(bytes).fail_with(Category::Internal, what);
            write(&(header.len() as u64).to_le_bytes())?;
            write(&header)?;
            for e in &entries {
                match &e.source {
                    Source::Spill { offset, len } => write(&spilled[*offset..offset + len])?,
                    Source::Input(entry) => write(input.bytes(entry))?,
                }
            }
            w.flush().fail_with(Category::Internal, what)?;
        }
        out.as_file()
            .sync_all()
            .fail_with(Category::Internal, what)?;
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
    // SAFETY: our own temporary, complete and no longer written.
    let map = unsafe { Mmap::map(file) }.fail_with(Category::Internal, || {
        format!("re-reading {}", path.display())
    })?;
    if let Err((_, problem)) = check_header(&map) {
        fail!(
            Category::Internal,
            "the file written for {} does not read back: {problem}",
            path.display()
        );
    }
    Ok(())
}
