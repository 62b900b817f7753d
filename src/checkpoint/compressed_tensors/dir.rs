//! Where an export writes: a model directory holding `config.json` (the
//! input's, with a `quantization_config`), the input's other small files
//! (tokenizer, generation and sentence-transformers configs), and the
//! safetensors shards in Hugging Face's names (`model.safetensors`, or
//! `model-0000i-of-0000N.safetensors` with `model.safetensors.index.json`),
//! all checked before any work and committed together.

use std::path::{Path, PathBuf};

use crate::checkpoint::files::{open_input, read_exact_at, refuse_special_output};
use crate::checkpoint::plan::{dir_of, same_file, OutputPlan};
use crate::checkpoint::reader::Checkpoint;
use crate::checkpoint::{bail, Context as _};
use crate::error::{CheckpointErrorKind, Result};

/// The name of the model configuration in a model directory.
pub const CONFIG_NAME: &str = "config.json";

/// Files larger than this beside the input are not companion files.
const COMPANION_MAX_BYTES: u64 = 64 << 20;

/// Extensions of the files copied from the input's directory.
const COMPANION_EXTENSIONS: [&str; 5] = ["json", "txt", "model", "tiktoken", "jinja"];

/// Extensions of the other files copied from its subdirectories: the
/// weights of modules the export does not touch (sentence-transformers'
/// `2_Dense/model.safetensors`).
const SUBDIR_EXTENSIONS: [&str; 1] = ["safetensors"];

/// The final paths of an export.
#[derive(Debug)]
pub struct CtPlan {
    /// The model directory.
    pub dir: PathBuf,
    /// The safetensors shards, the index and the report.
    pub tensors: OutputPlan,
    /// `config.json` in [`dir`](Self::dir).
    pub config: PathBuf,
    /// The input's `config.json`, when it has one.
    pub input_config: Option<PathBuf>,
    /// Other small files of the input's directory and its subdirectories,
    /// copied: (from, to).
    pub companions: Vec<(PathBuf, PathBuf)>,
    /// Subdirectories of [`dir`](Self::dir) the plan created for copied
    /// subdirectories (sentence-transformers' `1_Pooling/`), parents first;
    /// removed again, when empty, if the run fails.
    pub created_subdirs: Vec<PathBuf>,
    /// Whether the run created [`dir`](Self::dir) (removed again, if
    /// empty, when the run fails).
    pub created_dir: bool,
    /// Model files of an earlier export in [`dir`](Self::dir) that this one
    /// does not write (shards of another count, an index beside a single
    /// file): loaders would read them, so they are removed once the new
    /// files are in place ([`remove_stale`](Self::remove_stale); their
    /// presence needs `force`).
    pub stale: Vec<PathBuf>,
}

impl CtPlan {
    /// The outputs of exporting `input` into the directory `dir` (created
    /// when missing, its parent must exist), checked before any work.
    ///
    /// # Errors
    /// `dir` is the input's directory, or not a directory; an output that
    /// exists without `force`; those of [`OutputPlan::new`].
    pub fn new(
        input: &Checkpoint,
        dir: &Path,
        report: Option<&Path>,
        force: bool,
    ) -> Result<CtPlan> {
        let input_dir = dir_of(&input.path).to_path_buf();
        let created_dir = match std::fs::symlink_metadata(dir) {
            Ok(_) if !dir.is_dir() => bail!(
                OutputRefused,
                "{} is not a directory; the compressed-tensors export writes a model directory",
                dir.display()
            ),
            Ok(_) => false,
            Err(_) => {
                std::fs::create_dir(dir).context(CheckpointErrorKind::OutputRefused, || {
                    format!("cannot create the output directory {}", dir.display())
                })?;
                true
            }
        };
        let plan = Self::plan(input, &input_dir, dir, report, force, created_dir);
        if plan.is_err() && created_dir {
            let _ = std::fs::remove_dir(dir);
        }
        plan
    }

    fn plan(
        input: &Checkpoint,
        input_dir: &Path,
        dir: &Path,
        report: Option<&Path>,
        force: bool,
        created_dir: bool,
    ) -> Result<CtPlan> {
        if same_file(input_dir, dir) {
            bail!(
                OutputRefused,
                "{} is the input's directory; export into another directory (its config.json \
                 and shards would be replaced)",
                dir.display()
            );
        }
        let tensors = OutputPlan::new(input, &dir.join("model.safetensors"), report, force)?;
        let config = dir.join(CONFIG_NAME);
        let input_config = Some(input_dir.join(CONFIG_NAME)).filter(|p| p.is_file());
        let ours: Vec<PathBuf> = input.files();
        let mut companions = Vec::new();
        let mut subdirs = Vec::new();
        let mut walk = Walk {
            root: std::fs::canonicalize(input_dir).ok(),
            ours: &ours,
            output: dir,
            visited: Vec::new(),
            files: &mut companions,
            dirs: &mut subdirs,
        };
        walk.dir(input_dir, dir, true)?;
        companions.sort();
        let taken: Vec<&Path> = tensors.all();
        for sub in &subdirs {
            if std::fs::symlink_metadata(sub).is_ok_and(|m| !m.is_dir()) {
                bail!(
                    OutputRefused,
                    "{} exists and is not a directory; the input's subdirectory of that name is \
                     copied there",
                    sub.display()
                );
            }
        }
        let small =
            std::iter::once(config.as_path()).chain(companions.iter().map(|(_, to)| to.as_path()));
        for path in small {
            if taken.iter().any(|t| same_file(t, path) || *t == path) {
                bail!(
                    InvalidRequest,
                    "{} is named for two outputs (the report and a model file?)",
                    path.display()
                );
            }
            refuse_special_output(path)?;
            if !force && std::fs::symlink_metadata(path).is_ok() {
                bail!(
                    OutputRefused,
                    "{} exists; pass --force to replace it",
                    path.display()
                );
            }
        }
        let mut stale = Vec::new();
        if let Ok(listing) = std::fs::read_dir(dir) {
            for entry in listing.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let model_file = name.starts_with("model")
                    && (name.ends_with(".safetensors")
                        || name.ends_with(".safetensors.index.json"));
                if model_file && !taken.iter().any(|t| same_file(t, &path) || *t == path) {
                    if !force {
                        bail!(
                            OutputRefused,
                            "{} is left from an earlier export and loaders would read it; pass \
                             --force to replace the export (it is removed once the new one is \
                             in place)",
                            path.display()
                        );
                    }
                    stale.push(path);
                }
            }
        }
        stale.sort();
        let mut created_subdirs = Vec::new();
        for sub in subdirs {
            if std::fs::symlink_metadata(&sub).is_err() {
                let made = std::fs::create_dir(&sub);
                if made.is_ok() {
                    created_subdirs.push(sub.clone());
                }
                if let Err(e) = made {
                    remove_empty(&created_subdirs);
                    bail!(
                        OutputRefused,
                        "cannot create the output subdirectory {}: {e}",
                        sub.display()
                    );
                }
            }
        }
        Ok(CtPlan {
            dir: dir.to_path_buf(),
            tensors,
            config,
            input_config,
            companions,
            created_subdirs,
            created_dir,
            stale,
        })
    }

    /// After the new files are committed: removes [`stale`](Self::stale).
    ///
    /// # Errors
    /// A stale file that cannot be removed (named in the message).
    pub fn remove_stale(&self) -> Result<()> {
        for path in &self.stale {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => bail!(
                    Io,
                    "the export is in place, but {} from an earlier one could not be removed: \
                     {e}",
                    path.display()
                ),
            }
        }
        Ok(())
    }
}

/// Removes the directories `dirs` (parents first) that are empty, children
/// first.
pub(crate) fn remove_empty(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// A walk over the input directory collecting the files to copy.
struct Walk<'a> {
    /// The input directory, canonical: no subdirectory may lead out of it.
    root: Option<PathBuf>,
    /// The checkpoint's own files, which the export replaces.
    ours: &'a [PathBuf],
    /// The output directory, never copied into itself.
    output: &'a Path,
    /// Canonical paths of the directories walked, to refuse loops.
    visited: Vec<PathBuf>,
    files: &'a mut Vec<(PathBuf, PathBuf)>,
    dirs: &'a mut Vec<PathBuf>,
}

impl Walk<'_> {
    /// Collects the companions of `from` (copied to `to`) and walks its
    /// subdirectories; `top` for the input directory itself.
    ///
    /// A symlinked file is followed wherever it leads (the Hugging Face
    /// cache links every file of a snapshot to a blob outside it); a
    /// symlinked directory must stay inside the input directory and not
    /// lead back to a directory walked already.
    fn dir(&mut self, from: &Path, to: &Path, top: bool) -> Result<()> {
        if let Ok(canon) = std::fs::canonicalize(from) {
            if let Some(root) = &self.root {
                if !canon.starts_with(root) {
                    bail!(
                        InvalidInput,
                        "{} is a symlink to {}, outside the input directory {}; the export \
                         copies the input's subdirectories and refuses links out of it (copy \
                         it in, or remove the link)",
                        from.display(),
                        canon.display(),
                        root.display()
                    );
                }
            }
            if self.visited.contains(&canon) {
                bail!(
                    InvalidInput,
                    "{} leads back to {}, which the export already copies (a symlink loop); \
                     remove the link",
                    from.display(),
                    canon.display()
                );
            }
            self.visited.push(canon);
        }
        let Ok(listing) = std::fs::read_dir(from) else {
            return Ok(());
        };
        let mut entries: Vec<_> = listing.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if same_file(&path, self.output) {
                    continue;
                }
                let sub = to.join(&name);
                self.dirs.push(sub.clone());
                self.dir(&path, &sub, false)?;
                continue;
            }
            let companion = COMPANION_EXTENSIONS
                .iter()
                .chain(if top { &[][..] } else { &SUBDIR_EXTENSIONS[..] })
                .any(|ext| name.ends_with(&format!(".{ext}")));
            let skipped = (top && (name == CONFIG_NAME || name.ends_with(".index.json")))
                || !meta.is_file()
                || meta.len() > COMPANION_MAX_BYTES
                || !companion
                || self.ours.iter().any(|f| same_file(f, &path));
            if !skipped {
                self.files.push((path, to.join(name)));
            }
        }
        Ok(())
    }
}

/// The bytes of a small regular file.
pub(crate) fn read_small(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open_input(path)?;
    let mut buf = vec![0u8; len as usize];
    read_exact_at(&file, &mut buf, 0).context(CheckpointErrorKind::InvalidInput, || {
        format!("reading {}", path.display())
    })?;
    Ok(buf)
}
