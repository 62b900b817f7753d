//! `tch-quant dequantize`: each quantized `W` rebuilt under its own name
//! with torchao's `dequantize_affine`, everything else copied.

use std::collections::BTreeMap;

use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::Checkpoint;
use crate::cli::{DequantizeArgs, FloatDtype};
use crate::codec;
use crate::convert;
use crate::device;
use crate::exit::{fail, Category, Result};
use crate::format::{self, FileInfo, Record};
use crate::interrupt;
use crate::output::OutputPlan;
use crate::progress::Progress;
use crate::report::human_bytes;
use crate::writer::{self, dir_of, file_name, write_index, ShardWriter};

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
    let mut pending = Vec::new();
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0;
    let (mut restored, mut copied) = (0, 0);
    for (i, ((shard, info), out_path)) in input
        .shards
        .iter()
        .zip(&infos)
        .zip(&plan.shards)
        .enumerate()
    {
        let mut out = ShardWriter::new(dir_of(out_path))?;
        let consumed = format::quantized_output_names(info);
        for name in shard.names.iter().filter(|n| !consumed.contains(*n)) {
            interrupt::check()?;
            let entry = input
                .entry(name)
                .expect("shard names come from its entries");
            out.add_copy(entry)?;
            progress.advance(entry.num_bytes());
            copied += 1;
        }
        for (name, record) in &info.tensors {
            interrupt::check()?;
            progress.start(name);
            let w = restore(&input, i, name, record, output_dtype, device)?;
            out.add_tensor(name, &w)?;
            restored += 1;
        }
        let metadata: BTreeMap<String, String> = shard
            .metadata
            .iter()
            .filter(|(k, _)| !k.starts_with("tch_quant."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file_name = file_name(out_path);
        weight_map.extend(out.names().map(|n| (n.to_string(), file_name.clone())));
        total_size += out.data_bytes();
        pending.push(out.finish(&input, &metadata, out_path)?);
    }
    progress.finish();
    if let Some(index) = &plan.index {
        let mut metadata = input.index_metadata.clone().unwrap_or_default();
        metadata.retain(|k, _| !k.starts_with("tch_quant."));
        metadata.insert("total_size".into(), json!(total_size));
        pending.push(write_index(index, metadata, weight_map)?);
    }
    interrupt::check()?;
    writer::commit(pending, plan.force)?;
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
/// dequantizes.
fn restore(
    input: &Checkpoint,
    shard: usize,
    name: &str,
    record: &Record,
    output_dtype: Option<Kind>,
    device: Device,
) -> Result<Tensor> {
    let load = |tensor: &str| -> Result<Tensor> {
        match input.entry(tensor) {
            Some(entry) if entry.shard == shard => convert::load(input, entry, device),
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
    let output_dtype = match output_dtype.or_else(|| codec::kind_from_name(&record.dtype)) {
        Some(kind) => kind,
        None => fail!(
            Category::Input,
            "quantized tensor {name}: unknown original dtype {:?}; pass --dtype",
            record.dtype
        ),
    };
    codec::decode(
        name,
        record,
        &qdata,
        &scale,
        zero_point.as_ref(),
        output_dtype,
    )
}
