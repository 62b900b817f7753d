//! Quantizing a checkpoint: every tensor the selection chooses through the
//! recipe, the rest copied byte for byte, one output shard per input shard,
//! nothing renamed into place before everything is complete.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde_json::{json, Value};
use tch::{Device, Tensor};

use super::format::{self, FileInfo, Record};
use super::plan::OutputPlan;
use super::reader::{Checkpoint, Entry, Shard};
use super::writer::{
    interrupted_error, stored_dtype, Outputs, PlannedTensor, ShardPlan, ShardWriter,
};
use super::{bail, error, Context as _};
use crate::error::{CheckpointErrorKind, Result};
use crate::model::{Decision, Selection, SkipReason};
use crate::quantized::AffineQuantizedTensor;
use crate::recipe::Recipe;

/// What became of one tensor, as [`QuantizeObserver::finished`] sees it.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Quantized and stored (its values went to
    /// [`QuantizeObserver::quantized`] before).
    Quantized {
        /// Its record in the output's metadata.
        record: &'a Record,
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

    /// Rows `rows` (of the first dim) of a tensor being quantized, as read
    /// (`original`) and as stored (`piece`). A weight larger than a few MiB
    /// on the CPU comes in consecutive pieces of whole rows, each quantized
    /// on its own (bit-identical to quantizing the whole: every block of the
    /// recipes that get pieces lies within one row); anything else comes
    /// whole, as `0..rows`. A call whose range starts at 0 starts the tensor
    /// over: a tensor whose pieces hold a non-finite value or qparam is
    /// quantized again whole, since the bits of NaN depend on the shape
    /// libtorch computes it in. An error stops the run.
    fn quantized(
        &mut self,
        _entry: &Entry,
        _rows: Range<usize>,
        _original: &Tensor,
        _piece: &AffineQuantizedTensor,
    ) -> Result<()> {
        Ok(())
    }

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

impl QuantizeJob<'_> {
    /// A tensor's turn in an output loop: stops if `observer` asks to,
    /// tells it the tensor started, and returns the tensor's decision.
    ///
    /// # Errors
    /// An interruption; a tensor [`Checkpoint::decide`] gave no decision.
    pub(crate) fn begin(
        &self,
        entry: &Entry,
        observer: &mut dyn QuantizeObserver,
    ) -> Result<&Decision> {
        if observer.interrupted() {
            return Err(interrupted_error());
        }
        observer.started(entry);
        let Some(decision) = self.decisions.get(&entry.name) else {
            bail!(
                InvalidRequest,
                "no decision for tensor {} (decide on this checkpoint first)",
                entry.name
            );
        };
        Ok(decision)
    }
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
    quantize_shards(input, plan, job, observer, true)
}

/// [`quantize_checkpoint`]; with `plan_first`, the output files that can
/// be planned ([`plan_shard`]) are written in place, the others through
/// spill files.
fn quantize_shards<'p>(
    input: &Checkpoint,
    plan: &'p OutputPlan,
    job: &QuantizeJob,
    observer: &mut dyn QuantizeObserver,
    plan_first: bool,
) -> Result<Outputs<'p>> {
    job.recipe.validate()?;
    input.ensure_not_quantized()?;
    let layout = |_: usize, shard: &Shard| match plan_first {
        true => plan_shard(input, shard, job),
        false => Ok(None),
    };
    let mut outputs = Outputs::write_planned_shards(input, plan, layout, |_, shard, out| {
        let mut records = BTreeMap::new();
        for entry in shard.entries() {
            let decision = job.begin(entry, observer)?;
            match decision {
                Decision::Skip(reason) => {
                    out.add_copy(entry)?;
                    observer.finished(entry, Outcome::Copied(reason))?;
                }
                Decision::Quantize { block_size } => {
                    let (record, outputs, bytes_after) =
                        quantize_entry(input, entry, block_size, job, observer, out)?;
                    observer.finished(
                        entry,
                        Outcome::Quantized {
                            record: &record,
                            outputs: &outputs,
                            bytes_after,
                        },
                    )?;
                    records.insert(entry.name.clone(), record);
                }
            }
        }
        Ok(shard_metadata(shard, job, records))
    })?;
    let mut extra = serde_json::Map::new();
    extra.insert(format::KEY_VERSION.into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert(
        format::KEY_TORCHAO.into(),
        json!(job.recipe.semantics().torchao_version()),
    );
    extra.insert(format::KEY_SCHEME.into(), job.scheme.clone());
    outputs.write_index(input, extra)?;
    Ok(outputs)
}

/// The metadata of the output of `shard`: the input shard's own (e.g.
/// `format: pt`) plus ours, with the records of its quantized tensors.
fn shard_metadata(
    shard: &Shard,
    job: &QuantizeJob,
    records: BTreeMap<String, Record>,
) -> BTreeMap<String, String> {
    let info = FileInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        torchao_version: job.recipe.semantics().torchao_version().into(),
        scheme: job.scheme.clone(),
        tensors: records,
    };
    let mut metadata = format::foreign_metadata(&shard.metadata);
    metadata.extend(info.to_metadata());
    metadata
}

/// The layout of the output of `shard` before any of its data is computed,
/// so that each output byte is written once: copied tensors keep their
/// dtype and shape, and each tensor to quantize is probed ([`probe`]).
/// `None` when some tensor cannot be probed: the writer then spills.
fn plan_shard(input: &Checkpoint, shard: &Shard, job: &QuantizeJob) -> Result<Option<ShardPlan>> {
    let mut tensors = Vec::new();
    let mut records = BTreeMap::new();
    for entry in shard.entries() {
        match job.decisions.get(&entry.name) {
            // The quantizing loop reports it, in its turn.
            None => return Ok(None),
            Some(Decision::Skip(_)) => tensors.push(PlannedTensor {
                name: entry.name.clone(),
                dtype: entry.dtype,
                shape: entry.shape.clone(),
            }),
            Some(Decision::Quantize { block_size }) => {
                let Some((record, outputs)) = probe(input, entry, block_size, job) else {
                    return Ok(None);
                };
                tensors.extend(outputs);
                records.insert(entry.name.clone(), record);
            }
        }
    }
    Ok(Some(ShardPlan {
        tensors,
        metadata: shard_metadata(shard, job, records),
    }))
}

/// A tensor's record and stored tensors, from quantizing its first row
/// alone: for a tensor of rank 2 or more whose blocks are one row high,
/// every stored tensor then has one row where the whole tensor's has one
/// per row (each block lies in a row, and the recipes' shapes follow the
/// blocks), and the same dtype, and the record is the whole tensor's but
/// for its shape. `None` for other tensors, and when the probe fails or
/// does not come out so (the tensor's own turn then reports any error).
/// The writer checks every stored tensor against the probe's, and the
/// records against the metadata written first.
fn probe(
    input: &Checkpoint,
    entry: &Entry,
    block_size: &[i64],
    job: &QuantizeJob,
) -> Option<(Record, Vec<PlannedTensor>)> {
    let rows = *entry.shape.first()?;
    if entry.shape.len() < 2 || block_size.first() != Some(&1) || rows == 0 {
        return None;
    }
    let w = input.load_rows(entry, 0..1, job.device).ok()?;
    let q = AffineQuantizedTensor::quantize(&w, job.recipe).ok()?;
    let mut record = Record::of(&q);
    if record.block_size != block_size {
        return None;
    }
    record.shape = super::reader::shape_i64(&entry.name, &entry.shape).ok()?;
    let names = format::output_names(&entry.name, &record);
    let stored: Vec<&Tensor> = stored_tensors(&q).collect();
    if names.len() != stored.len() {
        return None;
    }
    let mut outputs = Vec::with_capacity(names.len());
    for (name, t) in names.into_iter().zip(stored) {
        let size = t.size();
        if size.first() != Some(&1) {
            return None;
        }
        let mut shape: Vec<usize> = size.iter().map(|&d| d as usize).collect();
        shape[0] = rows;
        outputs.push(PlannedTensor {
            dtype: stored_dtype(&name, t.kind()).ok()?,
            name,
            shape,
        });
    }
    Some((record, outputs))
}

/// The tensors a quantized tensor is stored as, in [`format::output_names`]
/// order: codes (one or more shards), scale, zero point.
fn stored_tensors(q: &AffineQuantizedTensor) -> impl Iterator<Item = &Tensor> {
    q.qdata()
        .iter()
        .chain(Some(q.scale()))
        .chain(q.zero_point())
}

/// The recipe on one weight; a failure names the tensor.
pub(crate) fn quantize_one(
    name: &str,
    w: &Tensor,
    recipe: &Recipe,
) -> Result<AffineQuantizedTensor> {
    AffineQuantizedTensor::quantize(w, recipe).map_err(|e| {
        let kind = match e {
            crate::Error::Torch { .. } => CheckpointErrorKind::Io,
            _ => CheckpointErrorKind::Unquantizable,
        };
        error(kind, format!("cannot quantize tensor {name}: {e}"))
    })
}

/// Input bytes per piece of a weight quantized in pieces: small enough that
/// every temporary of a piece (float32 copies of it, int32 codes) stays
/// below glibc's largest mmap threshold (32 MiB) and is reused rather than
/// faulted in afresh, and peak memory stays far below that of the whole
/// tensor's temporaries.
const PIECE_BYTES: usize = 8 << 20;

/// Quantizes one chosen tensor, in pieces of rows where that gives the
/// same bits, and adds its stored tensors to `out`; returns its record,
/// their names and their bytes.
fn quantize_entry(
    input: &Checkpoint,
    entry: &Entry,
    block_size: &[i64],
    job: &QuantizeJob,
    observer: &mut dyn QuantizeObserver,
    out: &mut ShardWriter,
) -> Result<(Record, Vec<String>, usize)> {
    // HQQ's solver stops on the mean error over the whole tensor, so its
    // bits depend on every row: such a weight is quantized whole.
    let pieces = (!job.recipe.use_hqq())
        .then(|| rows_per_piece(entry, block_size, job.device))
        .flatten();
    if let Some(rows) = pieces {
        if let Some(stored) = quantize_pieces(input, entry, rows, job, observer, out)? {
            return Ok(stored);
        }
    }
    let w = input.load(entry, job.device)?;
    let q = quantize_one(&entry.name, &w, job.recipe)?;
    observer.quantized(entry, 0..entry.shape.first().copied().unwrap_or(1), &w, &q)?;
    store(&entry.name, &q, out)
}

/// Rows per piece for a tensor that can be quantized in pieces of rows:
/// on the CPU (a GPU holds the whole tensor anyway), of rank 2 or more,
/// with blocks one row high (so no block spans two pieces), and larger
/// than one piece.
pub(crate) fn rows_per_piece(entry: &Entry, block_size: &[i64], device: Device) -> Option<usize> {
    let rows = *entry.shape.first()?;
    if device != Device::Cpu || entry.shape.len() < 2 || block_size.first() != Some(&1) {
        return None;
    }
    let row_bytes = entry.num_bytes() / rows.max(1);
    let per_piece = (PIECE_BYTES / row_bytes.max(1)).max(1);
    (per_piece < rows).then_some(per_piece)
}

/// Quantizes a tensor `rows` rows at a time, adding each piece's rows of
/// its stored tensors to `out` as they come; returns its record, their
/// names and their bytes. `None` when a piece holds a non-finite value or
/// gets a non-finite scale or zero point (whose NaN bits depend on the
/// shape they are computed in: the caller quantizes the tensor whole,
/// which replaces the rows added), or does not split by rows as expected.
fn quantize_pieces(
    input: &Checkpoint,
    entry: &Entry,
    rows: usize,
    job: &QuantizeJob,
    observer: &mut dyn QuantizeObserver,
    out: &mut ShardWriter,
) -> Result<Option<(Record, Vec<String>, usize)>> {
    let name = &entry.name;
    let total = entry.shape[0];
    let mut first: Option<(Record, Vec<String>)> = None;
    let mut bytes = 0;
    for start in (0..total).step_by(rows) {
        let range = start..(start + rows).min(total);
        let w = input.load_rows(entry, range.clone(), job.device)?;
        let q = quantize_one(name, &w, job.recipe)?;
        let stored: Vec<&Tensor> = stored_tensors(&q).collect();
        let splits = stored
            .iter()
            .all(|t| t.size().first() == Some(&(range.len() as i64)));
        // A NaN or an infinity in a block makes its scale NaN or infinite
        // (amin/amax and the clamp to eps propagate both), so finite qparams
        // also vouch for the piece's values, without a pass over them.
        let finite = all_finite(name, q.scale())?
            && q.zero_point().map_or(Ok(true), |zp| all_finite(name, zp))?;
        let (_, names) = first.get_or_insert_with(|| {
            let record = Record::of(&q);
            let names = format::output_names(name, &record);
            (record, names)
        });
        if !splits || !finite || names.len() != stored.len() {
            return Ok(None);
        }
        observer.quantized(entry, range.clone(), &w, &q)?;
        for (output, t) in names.iter().zip(stored) {
            bytes += out.add_rows(output, total, range.start, t)?;
        }
    }
    let Some((mut record, names)) = first else {
        return Ok(None);
    };
    record.shape = super::reader::shape_i64(name, &entry.shape)?;
    Ok(Some((record, names, bytes)))
}

/// Whether every value of `t` is finite (integer tensors always are).
pub(crate) fn all_finite(name: &str, t: &Tensor) -> Result<bool> {
    t.f_isfinite()
        .and_then(|f| f.f_all())
        .and_then(|a| a.f_int64_value(&[]))
        .map(|v| v != 0)
        .context(CheckpointErrorKind::Io, || format!("checking {name}"))
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
    let mut bytes = 0;
    for (output, tensor) in names.iter().zip(stored_tensors(q)) {
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

#[cfg(test)]
mod tests {
    use super::super::writer::append_bytes;
    use super::*;
    use tch::Kind;

    /// Writes `tensors` (contiguous CPU tensors) to a safetensors file.
    fn write(path: &Path, tensors: &[(&str, &Tensor)]) {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, t) in tensors {
            let start = data.len();
            append_bytes(t, &mut data).unwrap();
            header.insert(
                name.to_string(),
                json!({"dtype": super::super::dtype::dtype_of(t.kind()).unwrap(),
                       "shape": t.size(), "data_offsets": [start, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&Value::Object(header)).unwrap();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header);
        file.extend(data);
        std::fs::write(path, file).unwrap();
    }

    /// Output files written in place from their plan have the bytes of
    /// those written through spill files, for every recipe of the CLI, with
    /// copied tensors (a norm, integers), a weight smaller than a piece and
    /// one quantized again whole after its pieces (an infinity in its last
    /// piece); a per-tensor recipe gets no plan.
    #[test]
    fn planned_outputs_are_the_spilled_outputs_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.safetensors");
        tch::manual_seed(11);
        let big = Tensor::randn([2100, 2048], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let mut values =
            Vec::<f32>::try_from(Tensor::randn([4100, 1024], (Kind::Float, Device::Cpu)).view(-1))
                .unwrap();
        values[4099 * 1024 + 5] = f32::INFINITY;
        let inf = Tensor::from_slice(&values).view([4100, 1024]);
        let small = Tensor::randn([64, 256], (Kind::Float, Device::Cpu));
        let norm = Tensor::randn([256], (Kind::Float, Device::Cpu));
        let ids = Tensor::from_slice(&(0..40i64).collect::<Vec<_>>());
        write(
            &input,
            &[
                ("big.weight", &big),
                ("inf.weight", &inf),
                ("small.weight", &small),
                ("norm.weight", &norm),
                ("ids", &ids),
            ],
        );
        let checkpoint = Checkpoint::open(&input).unwrap();
        let per_tensor = Recipe::Custom(crate::CustomRecipe {
            granularity: crate::Granularity::PerTensor,
            ..Recipe::Int8WeightOnly { group_size: None }.arguments()
        });
        for recipe in [
            Recipe::Int4WeightOnly {
                group_size: 128,
                use_hqq: false,
            },
            Recipe::Int8WeightOnly { group_size: None },
            Recipe::Int8WeightOnly {
                group_size: Some(64),
            },
            Recipe::UIntXWeightOnly {
                bits: 3,
                group_size: 64,
                use_hqq: false,
            },
            Recipe::UIntXWeightOnly {
                bits: 8,
                group_size: 128,
                use_hqq: false,
            },
            Recipe::Float8WeightOnly,
            per_tensor,
        ] {
            let decisions = checkpoint.decide(&Selection::default(), &recipe).unwrap();
            let job = QuantizeJob {
                recipe: &recipe,
                decisions: &decisions,
                scheme: format::scheme_json(&recipe),
                device: Device::Cpu,
            };
            let planned = plan_shard(&checkpoint, &checkpoint.shards[0], &job).unwrap();
            assert_eq!(
                planned.is_some(),
                recipe != per_tensor,
                "{}: a plan",
                recipe.name()
            );
            let mut files = Vec::new();
            for plan_first in [true, false] {
                let output = dir.path().join(format!("{plan_first}.safetensors"));
                let _ = std::fs::remove_file(&output);
                let plan = OutputPlan::new(&checkpoint, &output, None, false).unwrap();
                quantize_shards(&checkpoint, &plan, &job, &mut (), plan_first)
                    .unwrap()
                    .commit()
                    .unwrap();
                files.push(std::fs::read(&output).unwrap());
            }
            assert!(files[0] == files[1], "{}: the files differ", recipe.name());
            let header = safetensors::SafeTensors::read_metadata(&files[0])
                .unwrap()
                .1;
            assert!(
                header.tensors().contains_key("big.weight.scale"),
                "{}: nothing quantized",
                recipe.name()
            );
        }
    }

    /// Same dtype, shape and bits (NaN included).
    fn same_bits(a: &Tensor, b: &Tensor) -> bool {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        append_bytes(a, &mut x).unwrap();
        append_bytes(b, &mut y).unwrap();
        a.kind() == b.kind() && a.size() == b.size() && x == y
    }

    /// The row ranges an observer was given, per tensor.
    #[derive(Default)]
    struct Pieces(BTreeMap<String, Vec<Range<usize>>>);

    impl QuantizeObserver for Pieces {
        fn quantized(
            &mut self,
            entry: &Entry,
            rows: Range<usize>,
            _: &Tensor,
            _: &AffineQuantizedTensor,
        ) -> Result<()> {
            self.0.entry(entry.name.clone()).or_default().push(rows);
            Ok(())
        }
    }

    /// Weights larger than a piece are quantized in pieces of rows, and give
    /// the bits of the whole tensor quantized at once; one with a NaN in its
    /// last piece is quantized again whole.
    #[test]
    fn pieces_give_the_bits_of_the_whole_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.safetensors");
        tch::manual_seed(7);
        // 4 KiB rows: 2048 rows a piece, the last piece 4 rows.
        let big = Tensor::randn([4100, 1024], (Kind::Float, Device::Cpu));
        let bf16 = Tensor::randn([2050, 2048], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let mut values = Vec::<f32>::try_from(big.view(-1)).unwrap();
        values[4099 * 1024 + 5] = f32::NAN;
        let nan = Tensor::from_slice(&values).view([4100, 1024]);
        let small = Tensor::randn([64, 256], (Kind::Float, Device::Cpu));
        write(
            &input,
            &[
                ("big.weight", &big),
                ("bf16.weight", &bf16),
                ("nan.weight", &nan),
                ("small.weight", &small),
            ],
        );
        let originals = [
            ("big.weight", &big),
            ("bf16.weight", &bf16),
            ("nan.weight", &nan),
            ("small.weight", &small),
        ];
        for recipe in [
            Recipe::Int4WeightOnly {
                group_size: 128,
                use_hqq: false,
            },
            Recipe::Int8WeightOnly { group_size: None },
            Recipe::UIntXWeightOnly {
                bits: 3,
                group_size: 64,
                use_hqq: false,
            },
        ] {
            let output = dir.path().join(format!("{}.safetensors", recipe.name()));
            let checkpoint = Checkpoint::open(&input).unwrap();
            let plan = OutputPlan::new(&checkpoint, &output, None, false).unwrap();
            let decisions = checkpoint.decide(&Selection::default(), &recipe).unwrap();
            let job = QuantizeJob {
                recipe: &recipe,
                decisions: &decisions,
                scheme: format::scheme_json(&recipe),
                device: Device::Cpu,
            };
            let mut pieces = Pieces::default();
            quantize_checkpoint(&checkpoint, &plan, &job, &mut pieces)
                .unwrap()
                .commit()
                .unwrap();
            assert_eq!(pieces.0["big.weight"], [0..2048, 2048..4096, 4096..4100]);
            assert_eq!(pieces.0["bf16.weight"], [0..2048, 2048..2050]);
            assert_eq!(pieces.0["nan.weight"], [0..2048, 2048..4096, 0..4100]);
            assert_eq!(pieces.0["small.weight"].len(), 1, "one piece");
            assert_eq!(pieces.0["small.weight"][0], 0..64);
            let stored = super::super::read_quantized(&output, Device::Cpu).unwrap();
            for (name, w) in originals {
                let whole = AffineQuantizedTensor::quantize(w, &recipe).unwrap();
                let ours = &stored[name];
                assert_eq!(ours.shape(), whole.shape(), "{name}");
                assert_eq!(ours.qdata().len(), whole.qdata().len(), "{name}");
                for (a, b) in ours.qdata().iter().zip(whole.qdata()) {
                    assert!(same_bits(a, b), "{} {name}: codes", recipe.name());
                }
                assert!(
                    same_bits(ours.scale(), whole.scale()),
                    "{} {name}: scale",
                    recipe.name()
                );
                assert!(
                    same_bits(ours.zero_point().unwrap(), whole.zero_point().unwrap()),
                    "{} {name}: zero point",
                    recipe.name()
                );
            }
        }
    }
}
