//! `tch-quant dequantize`: each quantized `W` read back as the library's
//! quantized tensor and rebuilt under its own name with torchao's
//! `dequantize_affine`, everything else copied.

use tch::Kind;
use tch_quant::checkpoint::format::{self, FileInfo};
use tch_quant::checkpoint::{Checkpoint, OutputPlan, Outputs};

use crate::cli::{DequantizeArgs, FloatDtype};
use crate::device;
use crate::exit::{fail, Category, Result};
use crate::interrupt;
use crate::print;
use crate::progress::Progress;
use crate::report::human_bytes;

pub fn run(args: DequantizeArgs) -> Result<()> {
    let device = device::resolve(args.device)?;
    let input = Checkpoint::open(&args.input)?;
    let infos = input
        .shards
        .iter()
        .map(|shard| match FileInfo::from_metadata(&shard.metadata)? {
            Some(info) => Ok(info),
            None => fail!(
                Category::Input,
                "{} was not written by tch-quant quantize (it has no tch_quant metadata); \
                 there is nothing to dequantize",
                shard.path.display()
            ),
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = OutputPlan::new(&input, &args.out.output, None, args.out.force)?;
    print::stale_removed(&plan);
    let output_dtype = args.dtype.map(|d| match d {
        FloatDtype::F32 => Kind::Float,
        FloatDtype::F16 => Kind::Half,
        FloatDtype::Bf16 => Kind::BFloat16,
    });

    let progress = Progress::new(input.total_bytes());
    let (mut restored, mut copied) = (0, 0);
    let mut outputs = Outputs::write_shards(&input, &plan, |i, shard, out| {
        let info = &infos[i];
        let consumed = format::quantized_output_names(info);
        for entry in shard.entries().filter(|e| !consumed.contains(&e.name)) {
            interrupt::check().map_err(interrupted)?;
            out.add_copy(entry)?;
            progress.advance(entry.num_bytes());
            copied += 1;
        }
        for (name, record) in &info.tensors {
            interrupt::check().map_err(interrupted)?;
            progress.start(name);
            let (q, bytes) = input.load_quantized(i, name, record, device)?;
            let w = q
                .dequantize_as(output_dtype.unwrap_or(q.dtype()))
                .map_err(|e| corrupt(name, e))?;
            out.add_tensor(name, &w)?;
            // The stored tensors it was rebuilt from: with the copies, every
            // byte of the input, so the bar ends at 100%.
            progress.advance(bytes);
            restored += 1;
        }
        Ok(format::foreign_metadata(&shard.metadata))
    })?;
    progress.finish();
    outputs.write_index(&input, serde_json::Map::new())?;
    // Made before the commit, the last step that can fail.
    let written = plan.index.as_ref().or(plan.shards.first());
    let summary = format!(
        "dequantized {restored} tensor{}, copied {copied}; wrote {} ({})\n",
        if restored == 1 { "" } else { "s" },
        written.map_or(String::new(), |p| p.display().to_string()),
        human_bytes(outputs.total_size())
    );
    outputs.commit_unless(&interrupt::requested)?;
    print::summary(&summary);
    Ok(())
}

/// Stored tensors that do not dequantize with their record: corrupt input.
fn corrupt(name: &str, e: tch_quant::Error) -> tch_quant::Error {
    tch_quant::Error::Checkpoint {
        kind: tch_quant::CheckpointErrorKind::InvalidInput,
        message: format!("quantized tensor {name}: {e}"),
    }
}

/// The command's interruption, for the library's writer loop.
fn interrupted(f: crate::exit::Failure) -> tch_quant::Error {
    tch_quant::Error::Checkpoint {
        kind: tch_quant::CheckpointErrorKind::Interrupted,
        message: f.to_string(),
    }
}
