//! `tch-quant inspect`: what a checkpoint holds, and for a tch-quant output
//! how each tensor was quantized.

use std::fmt::Write as _;

use serde::Serialize;

use tch_quant::checkpoint::dtype::dtype_name;
use tch_quant::checkpoint::format::{self, Codes, FileInfo, Record};
use tch_quant::checkpoint::Checkpoint;

use crate::cli::InspectArgs;
use crate::exit::Result;
use crate::print;
use crate::report::{dims, human_bytes};
use crate::table::{write_table, Align};

#[derive(Serialize)]
struct QuantizedView<'a> {
    name: &'a str,
    #[serde(flatten)]
    record: &'a Record,
    /// Bytes of the stored codes, scale and zero point.
    bytes: usize,
}

#[derive(Serialize)]
struct TensorView<'a> {
    name: &'a str,
    dtype: String,
    shape: &'a [usize],
    bytes: usize,
}

#[derive(Serialize)]
struct Inspection<'a> {
    path: String,
    files: Vec<String>,
    /// `null` for a checkpoint tch-quant did not write.
    tch_quant_version: Option<&'a str>,
    torchao_version: Option<&'a str>,
    scheme: Option<&'a serde_json::Value>,
    quantized: Vec<QuantizedView<'a>>,
    other: Vec<TensorView<'a>>,
    total_bytes: usize,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let input = Checkpoint::open(&args.input)?;
    let infos = input
        .shards
        .iter()
        .map(|s| FileInfo::from_metadata(&s.metadata))
        .collect::<tch_quant::Result<Vec<_>>>()?;
    let first = infos.iter().flatten().next();
    let mut quantized = Vec::new();
    let mut other = Vec::new();
    for (shard, info) in input.shards.iter().zip(&infos) {
        let consumed = info
            .as_ref()
            .map(format::quantized_output_names)
            .unwrap_or_default();
        if let Some(info) = info {
            for (name, record) in &info.tensors {
                let bytes = format::output_names(name, record)
                    .iter()
                    .filter_map(|n| input.entry(n))
                    .map(|e| e.num_bytes())
                    .sum();
                quantized.push(QuantizedView {
                    name,
                    record,
                    bytes,
                });
            }
        }
        for entry in shard.entries().filter(|e| !consumed.contains(&e.name)) {
            other.push(TensorView {
                name: &entry.name,
                dtype: dtype_name(entry.dtype),
                shape: &entry.shape,
                bytes: entry.num_bytes(),
            });
        }
    }
    let view = Inspection {
        path: args.input.display().to_string(),
        files: input
            .shards
            .iter()
            .map(|s| s.path.display().to_string())
            .collect(),
        tch_quant_version: first.map(|i| i.version.as_str()),
        torchao_version: first.map(|i| i.torchao_version.as_str()),
        scheme: first.map(|i| &i.scheme),
        quantized,
        other,
        total_bytes: input.total_bytes(),
    };
    let text = if args.json {
        serde_json::to_string_pretty(&view).expect("the inspection serializes") + "\n"
    } else {
        table(&view, first)
    };
    print::result(&text)
}

fn table(view: &Inspection, info: Option<&FileInfo>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", view.path);
    if view.files.len() > 1 || view.files.first() != Some(&view.path) {
        let _ = writeln!(out, "  shards: {}", view.files.join(", "));
    }
    match info {
        Some(info) => {
            let _ = writeln!(
                out,
                "  written by tch-quant {}, reproducing torchao {}",
                info.version, info.torchao_version
            );
            let _ = writeln!(out, "  scheme: {}", info.scheme_label());
        }
        None => {
            let _ = writeln!(out, "  not written by tch-quant (no tch_quant metadata)");
        }
    }
    let _ = writeln!(
        out,
        "  {} quantized tensors, {} other tensors, {} of tensor data",
        view.quantized.len(),
        view.other.len(),
        human_bytes(view.total_bytes)
    );
    if !view.quantized.is_empty() {
        let rows: Vec<[String; 8]> = view
            .quantized
            .iter()
            .map(|q| {
                let r = q.record;
                let shape: Vec<usize> = r.shape.iter().map(|&d| d as usize).collect();
                let block: Vec<usize> = r.block_size.iter().map(|&d| d as usize).collect();
                let codes = match &r.codes {
                    Codes::Plain { dtype } => dtype.clone(),
                    Codes::Packed { bits, shards, .. } => {
                        let packed = format!("uint{bits}");
                        let plural = if *shards == 1 { "" } else { "s" };
                        if r.target_dtype == packed {
                            format!("{packed} packed, {shards} shard{plural}")
                        } else {
                            format!(
                                "{} as {packed} packed, {shards} shard{plural}",
                                r.target_dtype
                            )
                        }
                    }
                };
                let zero_point = match &r.zero_point_dtype {
                    Some(d) => format!("{d} ({} domain)", r.zero_point_domain),
                    None => "none".into(),
                };
                [
                    q.name.to_string(),
                    dims(&shape),
                    r.dtype.clone(),
                    dims(&block),
                    codes,
                    format!("{}..{}", r.quant_min, r.quant_max),
                    format!("{} / {zero_point}", r.scale_dtype),
                    human_bytes(q.bytes),
                ]
            })
            .collect();
        let header = [
            "quantized tensor",
            "shape",
            "dtype",
            "block",
            "codes",
            "range",
            "scale / zero point",
            "bytes",
        ];
        let _ = writeln!(out);
        write_table(&mut out, header, [Align::Left; 8], &rows);
    }
    if !view.other.is_empty() {
        let rows: Vec<[String; 4]> = view
            .other
            .iter()
            .map(|t| {
                [
                    t.name.to_string(),
                    t.dtype.clone(),
                    dims(t.shape),
                    human_bytes(t.bytes),
                ]
            })
            .collect();
        let header = ["other tensor", "dtype", "shape", "bytes"];
        let _ = writeln!(out);
        write_table(&mut out, header, [Align::Left; 4], &rows);
    }
    out
}
