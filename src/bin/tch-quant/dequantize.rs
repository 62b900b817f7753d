//! `tch-quant dequantize`: each quantized `W` rebuilt under its own name
//! with torchao's `dequantize_affine`, everything else copied.

use tch::{Device, Kind, Tensor};

use crate::checkpoint::Checkpoint;
use crate::cli::{DequantizeArgs, FloatDtype};
use crate::codec;
use crate::convert;
use crate::device;
use crate::dtypes::float_kind;
use crate::exit::{fail, Category, Result};
use crate::format::{self, FileInfo, Record};
use crate::interrupt;
use crate::output::OutputPlan;
use crate::progress::Progress;
use crate::report::human_bytes;
use crate::writer::Outputs;

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
            interrupt::check()?;
            out.add_copy(entry)?;
            progress.advance(entry.num_bytes());
            copied += 1;
        }
        for (name, record) in &info.tensors {
            interrupt::check()?;
            progress.start(name);
            let (w, bytes) = restore(&input, i, name, record, output_dtype, device)?;
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
    let total_size = outputs.total_size();
    outputs.commit()?;
    let written = plan.index.as_ref().unwrap_or(&plan.shards[0]);
    println!(
        "dequantized {restored} tensor{}, copied {copied}; wrote {} ({})",
        if restored == 1 { "" } else { "s" },
        written.display(),
        human_bytes(total_size)
    );
    Ok(())
}

/// Loads `W.qdata*`, `W.scale` and `W.zero_point` from the shard and
/// dequantizes; also returns the bytes those stored tensors take.
fn restore(
    input: &Checkpoint,
    shard: usize,
    name: &str,
    record: &Record,
    output_dtype: Option<Kind>,
    device: Device,
) -> Result<(Tensor, usize)> {
    let bytes = std::cell::Cell::new(0);
    let load = |tensor: &str| -> Result<Tensor> {
        match input.entry(tensor) {
            Some(entry) if entry.shard == shard => {
                bytes.set(bytes.get() + entry.num_bytes());
                convert::load(input, entry, device)
            }
            _ => fail!(
                Category::Input,
                "{}: the metadata lists quantized tensor {name}, but {tensor} is missing",
                input.shards[shard].path.display()
            ),
        }
    };
    let qdata = format::qdata_names(name, &record.codes)
        .iter()
        .map(|n| load(n))
        .collect::<Result<Vec<_>>>()?;
    let scale = load(&format::scale_name(name))?;
    let zero_point = match record.zero_point_dtype {
        Some(_) => Some(load(&format::zero_point_name(name))?),
        None => None,
    };
    let output_dtype = match output_dtype.or_else(|| float_kind(&record.dtype)) {
        Some(kind) => kind,
        None => fail!(
            Category::Input,
            "quantized tensor {name}: unknown original dtype {:?}; pass --dtype",
            record.dtype
        ),
    };
    let w = codec::decode(
        name,
        record,
        &qdata,
        &scale,
        zero_point.as_ref(),
        output_dtype,
    )?;
    Ok((w, bytes.get()))
}
