//! Quantizing a checkpoint: every tensor the selection chooses through the
//! recipe, the rest copied byte for byte, one output shard per input shard,
//! nothing renamed into place before everything is complete.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use tch::{Device, Tensor};

use super::format::{self, FileInfo, Record, TORCHAO_VERSION};
use super::plan::OutputPlan;
use super::reader::{Checkpoint, Entry};
use super::writer::{interrupted_error, Outputs, ShardWriter};
use super::{bail, error};
use crate::error::{CheckpointErrorKind, Result};
use crate::model::{Decision, Selection, SkipReason};
use crate::quantized::AffineQuantizedTensor;
use crate::recipe::Recipe;

/// What became of one tensor, as [`QuantizeObserver::finished`] sees it.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Quantized and stored.
    Quantized {
        /// The tensor as read from the input.
        original: &'a Tensor,
        /// What was stored.
        tensor: &'a AffineQuantizedTensor,
        /// The names it is stored under.
        outputs: &'a [String],
        /// Bytes it takes in the output.
        bytes_after: usize,
    },
    /// Copied unchanged, for this reason.
    Copied(&'a SkipReason),
}

/// Hooks into [`quantize_checkpoint`]: progress, per-tensor reports and
/// cancellation. Every method has a default that does nothing.
pub trait QuantizeObserver {
    /// A tensor's turn has come.
    fn started(&mut self, _entry: &Entry) {}

    /// A tensor is done; an error stops the run (nothing is written).
    fn finished(&mut self, _entry: &Entry, _outcome: Outcome<'_>) -> Result<()> {
        Ok(())
    }

    /// Whether to stop at the next tensor boundary (nothing is written).
    fn interrupted(&self) -> bool {
        false
    }
}

/// The observer that observes nothing.
impl QuantizeObserver for () {}

/// What to quantize and how.
#[derive(Debug, Clone)]
pub struct QuantizeJob<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Each input tensor's fate, from [`Checkpoint::decide`].
    pub decisions: &'a BTreeMap<String, Decision>,
    /// The recipe as the output's metadata records it
    /// (`tch_quant.scheme`), usually [`format::scheme_json`].
    pub scheme: Value,
    /// Where tensors are quantized.
    pub device: Device,
}

/// Quantizes `input` into the files of `plan` and returns them written but
/// not yet renamed into place: add any file that must land with them (a
/// report), then [`Outputs::commit`].
///
/// # Errors
/// An input written by tch-quant (quantizing it again would lose its
/// records); a tensor that fails to load or quantize; any write failure;
/// the observer's errors and interruption.
pub fn quantize_checkpoint<'p>(
    input: &Checkpoint,
    plan: &'p OutputPlan,
    job: &QuantizeJob,
    observer: &mut dyn QuantizeObserver,
) -> Result<Outputs<'p>> {
    job.recipe.validate()?;
    input.ensure_not_quantized()?;
    let mut outputs = Outputs::write_shards(input, plan, |_, shard, out| {
        let mut records = BTreeMap::new();
        for entry in shard.entries() {
            if observer.interrupted() {
                return Err(interrupted_error());
            }
            observer.started(entry);
            let Some(decision) = job.decisions.get(&entry.name) else {
                bail!(
                    InvalidRequest,
                    "no decision for tensor {} (decide on this checkpoint first)",
                    entry.name
                );
            };
            match decision {
                Decision::Skip(reason) => {
                    out.add_copy(entry)?;
                    observer.finished(entry, Outcome::Copied(reason))?;
                }
                Decision::Quantize { .. } => {
                    let w = input.load(entry, job.device)?;
                    let q = quantize_one(&entry.name, &w, job.recipe)?;
                    let (record, outputs, bytes_after) = store(&entry.name, &q, out)?;
                    records.insert(entry.name.clone(), record);
                    observer.finished(
                        entry,
                        Outcome::Quantized {
                            original: &w,
                            tensor: &q,
                            outputs: &outputs,
                            bytes_after,
                        },
                    )?;
                }
            }
        }
        let info = FileInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            torchao_version: TORCHAO_VERSION.into(),
            scheme: job.scheme.clone(),
            tensors: records,
        };
        // The input shard's own metadata (e.g. `format: pt`) plus ours.
        let mut metadata = format::foreign_metadata(&shard.metadata);
        metadata.extend(info.to_metadata());
        Ok(metadata)
    })?;
    let mut extra = serde_json::Map::new();
    extra.insert(format::KEY_VERSION.into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert(format::KEY_TORCHAO.into(), json!(TORCHAO_VERSION));
    extra.insert(format::KEY_SCHEME.into(), job.scheme.clone());
    outputs.write_index(input, extra)?;
    Ok(outputs)
}

/// The recipe on one weight; a failure names the tensor.
fn quantize_one(name: &str, w: &Tensor, recipe: &Recipe) -> Result<AffineQuantizedTensor> {
    AffineQuantizedTensor::quantize(w, recipe).map_err(|e| {
        let kind = match e {
            crate::Error::Torch { .. } => CheckpointErrorKind::Io,
            _ => CheckpointErrorKind::Unquantizable,
        };
        error(kind, format!("cannot quantize tensor {name}: {e}"))
    })
}

/// Adds a quantized tensor's stored tensors to `out`; returns its record,
/// their names and their bytes.
fn store(
    name: &str,
    q: &AffineQuantizedTensor,
    out: &mut ShardWriter,
) -> Result<(Record, Vec<String>, usize)> {
    let record = Record::of(q);
    let names = format::output_names(name, &record);
    let tensors = q
        .qdata()
        .iter()
        .chain(Some(q.scale()))
        .chain(q.zero_point());
    let mut bytes = 0;
    for (output, tensor) in names.iter().zip(tensors) {
        bytes += out.add_tensor(output, tensor)?;
    }
    Ok((record, names, bytes))
}

/// What [`quantize_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tensors quantized.
    pub quantized: usize,
    /// Tensors copied unchanged.
    pub copied: usize,
    /// Bytes of tensor data written.
    pub bytes_after: usize,
}

/// Quantizes the checkpoint at `input` (a `.safetensors` file or a sharded
/// `*.index.json`) with `recipe` into `output` on the CPU, replacing nothing
/// that exists: open, decide, quantize, commit.
///
/// # Errors
/// Those of [`Checkpoint::open`], [`OutputPlan::new`] (an existing output
/// included), [`Checkpoint::decide`] and [`quantize_checkpoint`].
pub fn quantize_file(
    input: &Path,
    output: &Path,
    recipe: &Recipe,
    selection: &Selection,
) -> Result<Summary> {
    recipe.validate()?;
    let checkpoint = Checkpoint::open(input)?;
    let plan = OutputPlan::new(&checkpoint, output, None, false)?;
    let decisions = checkpoint.decide(selection, recipe)?;
    let job = QuantizeJob {
        recipe,
        decisions: &decisions,
        scheme: format::scheme_json(recipe),
        device: Device::Cpu,
    };
    let outputs = quantize_checkpoint(&checkpoint, &plan, &job, &mut ())?;
    let quantized = decisions
        .values()
        .filter(|d| matches!(d, Decision::Quantize { .. }))
        .count();
    let summary = Summary {
        quantized,
        copied: decisions.len() - quantized,
        bytes_after: outputs.total_size(),
    };
    outputs.commit()?;
    Ok(summary)
}
