//! Where a run writes, checked before any work: the output files must not
//! be the input, must not exist unless `--force`, and their directories must
//! exist and be writable.

use std::path::{Path, PathBuf};

use super::bail;
use super::files::refuse_special_output;
use super::reader::{is_index_path, Checkpoint};
use super::temp::{remove_stale, temp_file_in, TempKind};
use crate::error::Result;

/// The final paths of a run's outputs.
#[derive(Debug)]
pub struct OutputPlan {
    /// One per input shard, in the same order.
    pub shards: Vec<PathBuf>,
    /// The index, for a sharded input.
    pub index: Option<PathBuf>,
    /// A report written beside the outputs and committed with them.
    pub report: Option<PathBuf>,
    /// Whether existing outputs may be replaced.
    pub force: bool,
    /// Temporaries of runs killed outright that were found in the output
    /// directories and deleted ([`remove_stale`]).
    pub stale_removed: Vec<PathBuf>,
}

impl OutputPlan {
    /// The outputs for `input` written to `output` (for a sharded input,
    /// an index path or a prefix: `out/model.safetensors` gives
    /// `out/model-00001-of-0000N.safetensors` and
    /// `out/model.safetensors.index.json`), checked before any work. The
    /// temporaries that runs killed outright left in the output directories
    /// are deleted first (see [`remove_stale`] and
    /// [`stale_removed`](Self::stale_removed)).
    ///
    /// # Errors
    /// An index output for a single-file input; one path for two outputs;
    /// an output that is the input (hard links and symlinks included), a
    /// directory, a FIFO, device, socket or anything else that is not a
    /// regular file (even with `force`), or exists without `force`; a
    /// missing or unwritable directory.
    pub fn new(
        input: &Checkpoint,
        output: &Path,
        report: Option<&Path>,
        force: bool,
    ) -> Result<OutputPlan> {
        let (shards, index) = if input.is_sharded() {
            let (index, prefix) = index_and_prefix(output);
            let n = input.shards.len();
            let dir = dir_of(&index).to_path_buf();
            let shards = (1..=n)
                .map(|i| dir.join(format!("{prefix}-{i:05}-of-{n:05}.safetensors")))
                .collect();
            (shards, Some(index))
        } else {
            if is_index_path(output) {
                bail!(
                    InvalidRequest,
                    "{} names an index, but the input is a single file; name a .safetensors \
                     output",
                    output.display()
                );
            }
            (vec![output.to_path_buf()], None)
        };
        let plan = OutputPlan {
            shards,
            index,
            report: report.map(Path::to_path_buf),
            force,
            stale_removed: Vec::new(),
        };
        plan.check(&input.files())?;
        let mut dirs: Vec<&Path> = plan.all().into_iter().map(dir_of).collect();
        dirs.dedup();
        let stale_removed = dirs.into_iter().flat_map(remove_stale).collect();
        Ok(OutputPlan {
            stale_removed,
            ..plan
        })
    }

    /// Every file the run will create.
    pub fn all(&self) -> Vec<&Path> {
        let mut all: Vec<&Path> = self.shards.iter().map(PathBuf::as_path).collect();
        all.extend(self.index.as_deref());
        all.extend(self.report.as_deref());
        all
    }

    fn check(&self, inputs: &[PathBuf]) -> Result<()> {
        let all = self.all();
        for (i, path) in all.iter().enumerate() {
            if all[..i].iter().any(|p| same_path(p, path)) {
                bail!(
                    InvalidRequest,
                    "{} is named for two outputs (the checkpoint and the report?)",
                    path.display()
                );
            }
            let dir = dir_of(path);
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!(
                    OutputRefused,
                    "cannot write {}: {} is not a directory",
                    path.display(),
                    dir.display()
                ),
                Err(_) => bail!(
                    OutputRefused,
                    "cannot write {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ),
            }
            if inputs.iter().any(|input| same_file(input, path)) {
                bail!(
                    OutputRefused,
                    "{} is the input; tch-quant never writes over its input (choose another \
                     output path)",
                    path.display()
                );
            }
            refuse_special_output(path)?;
            if !self.force && std::fs::symlink_metadata(path).is_ok() {
                bail!(
                    OutputRefused,
                    "{} exists; pass --force to replace it",
                    path.display()
                );
            }
            // Fail now, not after minutes of work, if nothing can be created
            // there.
            drop(temp_file_in(dir, TempKind::Probe)?);
        }
        Ok(())
    }
}

/// The index path and the shard prefix for an output named `output`:
/// `out/model.safetensors.index.json` gives shards
/// `out/model-00001-of-0000N.safetensors`; `out/model.safetensors` is taken
/// to mean the same.
fn index_and_prefix(output: &Path) -> (PathBuf, String) {
    let text = output.to_string_lossy();
    let index = if is_index_path(output) {
        output.to_path_buf()
    } else {
        PathBuf::from(format!("{text}.index.json"))
    };
    let file = index
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = [".safetensors.index.json", ".index.json", ".json"]
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .unwrap_or(&file)
        .to_string();
    (index, prefix)
}

/// Whether two paths name the same existing file (hard links and symlinks
/// included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// Whether two paths, existing or not, name the same place.
fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        let dir = dir_of(p)
            .canonicalize()
            .unwrap_or_else(|_| dir_of(p).to_path_buf());
        dir.join(p.file_name().unwrap_or_default())
    };
    same_file(a, b) || canon(a) == canon(b)
}

/// The directory a path lives in (`.` for a bare file name).
pub(crate) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The last component of a path, as text (empty for none).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_follow_the_index_name() {
        let (index, prefix) = index_and_prefix(Path::new("out/model.safetensors.index.json"));
        assert_eq!(index, Path::new("out/model.safetensors.index.json"));
        assert_eq!(prefix, "model");
        let (index, prefix) = index_and_prefix(Path::new("q.safetensors"));
        assert_eq!(index, Path::new("q.safetensors.index.json"));
        assert_eq!(prefix, "q");
    }

    #[test]
    fn bare_names_live_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("a.safetensors")), Path::new("."));
        assert_eq!(dir_of(Path::new("out/a.safetensors")), Path::new("out"));
        assert_eq!(file_name(Path::new("out/a.safetensors")), "a.safetensors");
    }
}
