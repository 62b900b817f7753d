//! `tch-quant quantize`: every selected weight through the scheme, the rest
//! copied, all outputs committed together at the end.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::cli::QuantizeArgs;
use crate::codec;
use crate::convert;
use crate::device;
use crate::dtypes::dtype_name;
use crate::exit::{fail, Categorize, Category, Result};
use crate::format::{self, FileInfo, TORCHAO_VERSION};
use crate::interrupt;
use crate::output::OutputPlan;
use crate::progress::Progress;
use crate::report::{error_stats, Report, TensorOutcome, TensorReport};
use crate::scheme::Scheme;
use crate::select::{Decision, Selector};
use crate::writer::{Outputs, PendingFile, ShardWriter};

pub fn run(args: QuantizeArgs) -> Result<()> {
    let started = Instant::now();
    let scheme = Scheme::from_args(&args)?;
    let selector = Selector::new(&args.include, &args.exclude)?;
    let device = device::resolve(args.device)?;
    let input = Checkpoint::open(&args.input)?;
    refuse_quantized_input(&input)?;
    let plan = OutputPlan::new(
        &input,
        &args.out.output,
        args.report.as_deref(),
        args.out.force,
    )?;
    let decisions = decide_all(&input, &selector, &scheme)?;

    let progress = Progress::new(input.total_bytes());
    let mut reports = Vec::new();
    let mut outputs = Outputs::write_shards(&input, &plan, |_, shard, out| {
        let mut records = BTreeMap::new();
        for entry in shard.entries() {
            interrupt::check()?;
            let name = &entry.name;
            progress.start(name);
            let outcome = match &decisions[name] {
                Decision::Copy { reason } => {
                    out.add_copy(entry)?;
                    TensorOutcome::Copied {
                        reason: reason.clone(),
                    }
                }
                Decision::Quantize { block_size } => {
                    let w = convert::load(&input, entry, device)?;
                    let (record, outcome) = quantize_one(name, &w, block_size, &scheme, out)?;
                    records.insert(name.clone(), record);
                    outcome
                }
            };
            reports.push(TensorReport {
                name: name.clone(),
                shape: entry.shape.clone(),
                dtype: dtype_name(entry.dtype),
                bytes_before: entry.num_bytes(),
                outcome,
            });
            progress.advance(entry.num_bytes());
        }
        let info = FileInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            torchao_version: TORCHAO_VERSION.into(),
            scheme: scheme.args.clone(),
            tensors: records,
        };
        // The input shard's own metadata (e.g. `format: pt`) plus ours.
        let mut metadata = format::foreign_metadata(&shard.metadata);
        metadata.extend(info.to_metadata());
        Ok(metadata)
    })?;
    progress.finish();

    let mut extra = serde_json::Map::new();
    extra.insert(format::KEY_VERSION.into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert(format::KEY_TORCHAO.into(), json!(TORCHAO_VERSION));
    extra.insert(format::KEY_SCHEME.into(), scheme.args.clone());
    outputs.write_index(&input, extra)?;
    let report = Report {
        tool: "tch-quant",
        version: env!("CARGO_PKG_VERSION"),
        torchao_version: TORCHAO_VERSION,
        scheme: scheme.args.clone(),
        device: device::name(device),
        input: args.input.display().to_string(),
        outputs: plan
            .index
            .iter()
            .chain(&plan.shards)
            .map(|p| p.display().to_string())
            .collect(),
        totals: Report::totals(&reports, started.elapsed().as_secs_f64()),
        tensors: reports,
    };
    if let Some(path) = &plan.report {
        outputs.add(PendingFile::with_contents(
            path,
            report.to_json().as_bytes(),
        )?);
    }
    outputs.commit()?;
    print!("{}", report.table());
    Ok(())
}

/// Quantizes one weight, stores its tensors and measures the error of
/// exactly what was stored.
fn quantize_one(
    name: &str,
    w: &tch::Tensor,
    block_size: &[i64],
    scheme: &Scheme,
    out: &mut ShardWriter,
) -> Result<(format::Record, TensorOutcome)> {
    let encoded = codec::encode(name, w, block_size, scheme)?;
    let restored = codec::decode(
        name,
        &encoded.record,
        &encoded.qdata,
        &encoded.scale,
        encoded.zero_point.as_ref(),
        w.kind(),
    )?;
    let error = error_stats(w, &restored).fail_with(Category::Internal, || {
        format!("measuring the error of {name}")
    })?;
    let mut bytes_after = 0;
    let outputs = format::output_names(name, &encoded.record);
    let tensors = encoded
        .qdata
        .iter()
        .chain(Some(&encoded.scale))
        .chain(encoded.zero_point.as_ref());
    for (output, tensor) in outputs.iter().zip(tensors) {
        bytes_after += out.add_tensor(output, tensor)?;
    }
    let outcome = TensorOutcome::Quantized {
        block_size: block_size.to_vec(),
        error,
        bytes_after,
        outputs,
    };
    Ok((encoded.record, outcome))
}

/// Decides for every tensor before any work, so that a tensor named with
/// `--include` that cannot be quantized fails the run at once, as does a
/// tensor whose outputs would take a name the checkpoint already uses.
fn decide_all(
    input: &Checkpoint,
    selector: &Selector,
    scheme: &Scheme,
) -> Result<BTreeMap<String, Decision>> {
    let mut decisions = BTreeMap::new();
    for entry in input.shards.iter().flat_map(|s| s.entries()) {
        let name = &entry.name;
        let decision = selector.decide(name, entry.dtype, &entry.shape, scheme)?;
        if matches!(decision, Decision::Quantize { .. }) {
            // Every name the scheme's outputs take, against every tensor of
            // every shard (outputs of two different quantized tensors never
            // share a name: each ends in its own tensor's name plus a fixed
            // suffix).
            if let Some(taken) = scheme
                .output_names(name)
                .into_iter()
                .find(|n| input.entry(n).is_some())
            {
                fail!(
                    Category::Tensor,
                    "cannot quantize {name}: the checkpoint already has a tensor named \
                     {taken}, which the quantized output would need"
                );
            }
        }
        decisions.insert(name.clone(), decision);
    }
    Ok(decisions)
}

/// Quantizing a tch-quant output again would lose its records.
fn refuse_quantized_input(input: &Checkpoint) -> Result<()> {
    for shard in &input.shards {
        if shard.metadata.contains_key(format::KEY_FORMAT) {
            fail!(
                Category::Input,
                "{} was written by tch-quant quantize; run tch-quant dequantize on it first",
                shard.path.display()
            );
        }
    }
    Ok(())
}
