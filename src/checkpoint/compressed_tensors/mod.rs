//! Export to compressed-tensors (the `checkpoint` feature): a quantized
//! model directory that compressed-tensors 0.20 and Hugging Face
//! transformers load (`AutoModel.from_pretrained(dir)`), with the codes,
//! scales and zero points of torchao 0.11's recipes moved into
//! compressed-tensors' conventions exactly (see [`scheme`] for which recipe
//! maps onto which scheme, and what is refused).
//!
//! - [`scheme`]: recipe → compressed-tensors scheme and `quantization_config`;
//! - [`pack`]: compressed-tensors' dense int32 packing;
//! - [`tensors`]: a quantized weight as the tensors its module stores;
//! - [`dir`]: the model directory's files, checked before any work.
//!
//! The tensors are written by the checkpoint [`writer`](super::writer):
//! temporaries in the output directory, renamed into place together with
//! `config.json`, the index and the copied files only once all are complete.
//! Weights whose scales are per row are quantized and stored in pieces of
//! rows, as in the crate's own format, so that an export holds about the
//! largest weight's output and one piece's temporaries.
//!
//! # Examples
//! ```no_run
//! use tch_quant::checkpoint::compressed_tensors::{export_file, AsymmetricLayout};
//! use tch_quant::{Recipe, Selection};
//! let summary = export_file("model/model.safetensors".as_ref(), "model-u4".as_ref(),
//!                           &Recipe::UIntXWeightOnly { bits: 4, group_size: 32, use_hqq: false },
//!                           &Selection::default(), AsymmetricLayout::Block, false)?;
//! println!("{} quantized, {} copied", summary.quantized, summary.copied);
//! # Ok::<(), tch_quant::Error>(())
//! ```

pub mod dir;
pub mod pack;
pub mod scheme;
pub mod tensors;

pub use dir::CtPlan;
pub use scheme::{AsymmetricLayout, CtScheme, CtStrategy, COMPRESSED_TENSORS_VERSION};

use std::path::Path;

use serde_json::{json, Value};
use tch::{Device, Tensor};

use super::format::{self, Record};
use super::quantize::{
    all_finite, quantize_one, rows_per_piece, Outcome, QuantizeJob, QuantizeObserver, Summary,
};
use super::reader::{shape_i64, Checkpoint, Entry};
use super::writer::{Outputs, PendingFile, ShardWriter};
use super::{bail, error};
use crate::error::{CheckpointErrorKind, Result};
use crate::model::{Decision, Selection};
use crate::recipe::Recipe;

/// Quantizes `input` with `job` into the files of `plan` in
/// compressed-tensors' format and returns them written but not yet renamed
/// into place (add a report, then [`Outputs::commit`]).
///
/// `job.scheme` is not used: the format's own `quantization_config` in
/// `config.json` records the scheme.
///
/// # Errors
/// A recipe no compressed-tensors scheme stores exactly
/// ([`CtScheme::for_recipe`]); an input written by tch-quant; a chosen
/// tensor that is not a 2-D `<module>.weight`; an input `config.json` that
/// is not a JSON object; those of [`quantize_checkpoint`](super::quantize_checkpoint).
pub fn export_checkpoint<'p>(
    input: &Checkpoint,
    plan: &'p CtPlan,
    job: &QuantizeJob,
    layout: AsymmetricLayout,
    observer: &mut dyn QuantizeObserver,
) -> Result<Outputs<'p>> {
    let scheme = CtScheme::for_recipe(job.recipe, layout)?;
    input.ensure_not_quantized()?;
    let base_config = match &plan.input_config {
        Some(path) => {
            let bytes = dir::read_small(path)?;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => map,
                Ok(_) => bail!(InvalidInput, "{} is not a JSON object", path.display()),
                Err(e) => bail!(InvalidInput, "{} is not JSON: {e}", path.display()),
            }
        }
        None => serde_json::Map::new(),
    };
    // Every chosen tensor must be storable before any work starts; the
    // modules of the 2-D weights left dense are the config's `ignore`.
    let mut ignore = Vec::new();
    for entry in input.shards.iter().flat_map(|s| s.entries()) {
        match job.decisions.get(&entry.name) {
            Some(Decision::Quantize { .. }) => {
                tensors::module_of(&entry.name)?;
                if entry.shape.len() != 2 {
                    bail!(
                        Unquantizable,
                        "tensor {} has shape {:?}; the compressed-tensors export quantizes only \
                         2-D (Linear) weights; exclude it (--exclude)",
                        entry.name,
                        entry.shape
                    );
                }
            }
            Some(Decision::Skip(_)) if entry.shape.len() == 2 => {
                if let Some(module) = entry.name.strip_suffix(".weight") {
                    ignore.push(module.to_string());
                }
            }
            _ => {}
        }
    }
    ignore.sort();
    let mut outputs = Outputs::write_shards(input, &plan.tensors, |_, shard, out| {
        for entry in shard.entries() {
            let decision = job.begin(entry, observer)?;
            match decision {
                Decision::Skip(reason) => {
                    out.add_copy(entry)?;
                    observer.finished(entry, Outcome::Copied(reason))?;
                }
                Decision::Quantize { block_size } => {
                    let (record, names, bytes) =
                        export_entry(input, entry, block_size, job, &scheme, observer, out)?;
                    observer.finished(
                        entry,
                        Outcome::Quantized {
                            record: &record,
                            outputs: &names,
                            bytes_after: bytes,
                        },
                    )?;
                }
            }
        }
        let mut metadata = format::foreign_metadata(&shard.metadata);
        metadata
            .entry("format".to_string())
            .or_insert_with(|| "pt".to_string());
        Ok(metadata)
    })?;
    outputs.write_index(input, serde_json::Map::new())?;
    let mut config = base_config;
    config.insert(
        "quantization_config".into(),
        scheme.quantization_config(&ignore),
    );
    let text =
        serde_json::to_string_pretty(&Value::Object(config)).expect("JSON serializes") + "\n";
    outputs.add(PendingFile::with_contents(&plan.config, text.as_bytes())?);
    for (from, to) in &plan.companions {
        outputs.add(PendingFile::with_contents(to, &dir::read_small(from)?)?);
    }
    Ok(outputs)
}

/// Quantizes one chosen weight and adds its stored tensors to `out`: in
/// pieces of rows when its scheme's scales are per row (the pieces of the
/// crate's own format, [`rows_per_piece`]), so that the memory held is the
/// weight's output and one piece's temporaries rather than copies of the
/// whole weight; whole otherwise, or when a piece is not finite (see
/// [`export_pieces`]). Returns its record, stored names and bytes.
fn export_entry(
    input: &Checkpoint,
    entry: &Entry,
    block_size: &[i64],
    job: &QuantizeJob,
    scheme: &CtScheme,
    observer: &mut dyn QuantizeObserver,
    out: &mut ShardWriter,
) -> Result<(Record, Vec<String>, usize)> {
    if scheme.strategy().is_per_row() {
        if let Some(rows) = rows_per_piece(entry, block_size, job.device) {
            if let Some(done) = export_pieces(input, entry, rows, job, scheme, observer, out)? {
                return Ok(done);
            }
        }
    }
    let w = input.load(entry, job.device)?;
    let q = quantize_one(&entry.name, &w, job.recipe)?;
    let rows = entry.shape.first().copied().unwrap_or(1);
    observer.quantized(entry, 0..rows, &w, &q)?;
    drop(w);
    let q = match job.device {
        Device::Cpu => q,
        _ => q.to_device(Device::Cpu)?,
    };
    let mut record = Record::of(&q);
    record.shape = shape_i64(&entry.name, &entry.shape)?;
    let mut names = Vec::new();
    let mut bytes = 0;
    for (name, t) in tensors::stored_tensors(&entry.name, &q, scheme)? {
        bytes += out.add_tensor(&name, &t)?;
        names.push(name);
    }
    Ok((record, names, bytes))
}

/// Quantizes a weight `rows` rows at a time and adds each piece's rows of
/// its stored tensors to `out`, then the tensors that span its rows (the
/// zero point packed along dim 0, packed once from every piece's codes,
/// and `weight_shape`): the same bits as the whole weight's, since every
/// scale and code depends on its own row alone. `None` when a piece gets a
/// non-finite scale or zero point (whose NaN bits depend on the shape they
/// are computed in) or does not split by rows: the caller then quantizes
/// the weight whole, which replaces the rows added.
fn export_pieces(
    input: &Checkpoint,
    entry: &Entry,
    rows: usize,
    job: &QuantizeJob,
    scheme: &CtScheme,
    observer: &mut dyn QuantizeObserver,
    out: &mut ShardWriter,
) -> Result<Option<(Record, Vec<String>, usize)>> {
    let name = &entry.name;
    let total = entry.shape[0];
    let mut record = None;
    let mut names = Vec::new();
    let mut zero_points = Vec::new();
    let mut bytes = 0;
    for start in (0..total).step_by(rows) {
        let range = start..(start + rows).min(total);
        let w = input.load_rows(entry, range.clone(), job.device)?;
        let q = quantize_one(name, &w, job.recipe)?;
        let finite = all_finite(name, q.scale())?
            && q.zero_point().map_or(Ok(true), |zp| all_finite(name, zp))?;
        if !finite {
            return Ok(None);
        }
        let piece = tensors::stored_piece(name, &q, scheme)?;
        let splits = piece
            .rows
            .iter()
            .all(|(_, t)| t.size().first() == Some(&(range.len() as i64)));
        if !splits {
            return Ok(None);
        }
        observer.quantized(entry, range.clone(), &w, &q)?;
        record.get_or_insert_with(|| Record::of(&q));
        if start == 0 {
            names = piece.rows.iter().map(|(n, _)| n.clone()).collect();
        }
        for (output, t) in &piece.rows {
            bytes += out.add_rows(output, total, range.start, t)?;
        }
        zero_points.extend(piece.zero_point);
    }
    let Some(mut record) = record else {
        return Ok(None);
    };
    record.shape = shape_i64(name, &entry.shape)?;
    let zero_point = match zero_points.is_empty() {
        true => None,
        false => Some(
            Tensor::f_cat(&zero_points, 0)
                .map_err(|e| error(CheckpointErrorKind::Io, format!("{name}: {e}")))?,
        ),
    };
    for (output, t) in tensors::finish(name, &record.shape, scheme, zero_point)? {
        bytes += out.add_tensor(&output, &t)?;
        names.push(output);
    }
    Ok(Some((record, names, bytes)))
}

/// Exports the checkpoint at `input` (a `.safetensors` file or a sharded
/// `*.index.json`) quantized with `recipe` into the model directory `dir`
/// on the CPU: open, plan, decide, quantize, commit. Nothing is replaced
/// without `force`; on failure nothing is left (a directory the run
/// created is removed again when empty).
///
/// # Errors
/// Those of [`Checkpoint::open`], [`CtPlan::new`], [`Checkpoint::decide`]
/// and [`export_checkpoint`].
pub fn export_file(
    input: &Path,
    dir: &Path,
    recipe: &Recipe,
    selection: &Selection,
    layout: AsymmetricLayout,
    force: bool,
) -> Result<Summary> {
    CtScheme::for_recipe(recipe, layout)?;
    let checkpoint = Checkpoint::open(input)?;
    let plan = CtPlan::new(&checkpoint, dir, None, force)?;
    let result = (|| {
        let decisions = checkpoint.decide(selection, recipe)?;
        let job = QuantizeJob {
            recipe,
            decisions: &decisions,
            scheme: json!(null),
            device: Device::Cpu,
        };
        let outputs = export_checkpoint(&checkpoint, &plan, &job, layout, &mut ())?;
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
        plan.remove_stale()?;
        Ok(summary)
    })();
    if result.is_err() {
        plan.abandon();
    }
    result
}

impl CtPlan {
    /// After a failed run: removes the output directory and subdirectories
    /// this plan created, where nothing is left in them.
    pub fn abandon(&self) {
        dir::remove_empty(&self.created_subdirs);
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
