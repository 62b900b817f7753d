//! Successful commands: their output files, metadata and report, `inspect`,
//! and `dequantize` round trips.

use std::collections::BTreeSet;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::Value;

use crate::{
    assert_ok, f32_bytes, quantize, read_back, tch_quant, text, tiny, tiny_sharded, Work, TINY,
};

#[test]
fn help_documents_commands_examples_and_exit_codes() {
    let out = tch_quant(["--help"]);
    assert_ok(&out);
    let help = text(&out.stdout);
    for needle in [
        "quantize",
        "dequantize",
        "inspect",
        "Examples:",
        "Exit codes:",
        "130",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} missing from --help:\n{help}"
        );
    }
    for command in ["quantize", "dequantize", "inspect"] {
        let out = tch_quant([command, "--help"]);
        assert_ok(&out);
        let help = text(&out.stdout);
        assert!(help.contains("Examples:"), "{command} --help:\n{help}");
        assert!(help.contains("Exit codes:"), "{command} --help:\n{help}");
        assert!(
            help.contains(&format!("tch-quant {command} ")),
            "{command} --help:\n{help}"
        );
    }
    let quantize_help = text(&tch_quant(["quantize", "--help"]).stdout);
    for scheme in [
        "int8-weight-only",
        "int4-weight-only",
        "uintx-weight-only",
        "float8-weight-only",
        "custom",
    ] {
        assert!(quantize_help.contains(scheme), "{scheme} missing");
    }
    let out = tch_quant(["--version"]);
    assert_ok(&out);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("tch-quant {}", env!("CARGO_PKG_VERSION"))
    );
    // No command at all is a usage error, with the help on stderr.
    assert_eq!(tch_quant(Vec::<&str>::new()).status.code(), Some(2));
}

#[test]
fn int4_output_has_packed_codes_metadata_and_a_report() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("int4.safetensors");
    let report = work.path("int4.json");
    let out = quantize(
        &input,
        &output,
        &[
            "--scheme",
            "int4-weight-only",
            "--group-size",
            "32",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_ok(&out);
    // No progress bar when stderr is not a terminal.
    assert_eq!(text(&out.stderr), "");
    let summary = text(&out.stdout);
    for needle in [
        "SQNR dB",
        "max |err|",
        "layer.0.linear.weight",
        "copied unchanged:",
        "total:",
        "x)",
    ] {
        assert!(
            summary.contains(needle),
            "{needle:?} missing from the summary:\n{summary}"
        );
    }

    let (tensors, meta) = read_back(&output);
    assert_eq!(
        tensors["layer.0.linear.weight.qdata"],
        (Dtype::U8, vec![16, 32])
    );
    assert_eq!(
        tensors["layer.0.linear.weight.scale"],
        (Dtype::F32, vec![16, 2])
    );
    assert_eq!(
        tensors["layer.0.linear.weight.zero_point"],
        (Dtype::BF16, vec![16, 2])
    );
    assert_eq!(
        tensors["layer.1.linear.weight.scale"],
        (Dtype::BF16, vec![8, 4])
    );
    assert_eq!(tensors["experts.weight.qdata"], (Dtype::U8, vec![2, 8, 32]));
    assert!(!tensors.contains_key("layer.0.linear.weight"));
    for copied in [
        "odd.weight",
        "norm.weight",
        "embed_tokens.weight",
        "position_ids",
        "layer.0.linear.bias",
    ] {
        assert!(tensors.contains_key(copied), "{copied} was not copied");
    }
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["tch_quant.torchao_version"], "0.11.0");
    assert_eq!(meta["tch_quant.version"], env!("CARGO_PKG_VERSION"));
    let scheme: Value = serde_json::from_str(&meta["tch_quant.scheme"]).unwrap();
    assert_eq!(
        scheme,
        serde_json::json!({"name": "int4-weight-only", "group_size": 32})
    );
    let records: Value = serde_json::from_str(&meta["tch_quant.tensors"]).unwrap();
    let r = &records["layer.0.linear.weight"];
    assert_eq!(r["block_size"], serde_json::json!([1, 32]));
    assert_eq!(
        (r["quant_min"].as_i64(), r["quant_max"].as_i64()),
        (Some(0), Some(15))
    );
    assert_eq!(r["zero_point_domain"], "float");
    assert_eq!(r["target_dtype"], "int32");
    assert_eq!(
        r["codes"],
        serde_json::json!({"layout": "packed", "bits": 4, "dim": -1, "shards": 1})
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let entries = report["tensors"].as_array().unwrap();
    assert_eq!(entries.len(), TINY.len());
    let by_name = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap();
    let q = by_name("layer.0.linear.weight");
    assert_eq!(q["status"], "quantized");
    // torch's dtype names, as in the file's records.
    assert_eq!(q["dtype"], "float32");
    assert_eq!(by_name("position_ids")["dtype"], "int64");
    assert_eq!(by_name("layer.1.linear.weight")["dtype"], "bfloat16");
    assert!(q["sqnr_db"].as_f64().unwrap() > 15.0);
    assert!(q["max_abs_error"].as_f64().unwrap() > 0.0);
    assert_eq!(q["bytes_before"], 16 * 64 * 4);
    assert_eq!(q["bytes_after"], 16 * 32 + 16 * 2 * 4 + 16 * 2 * 2);
    let odd = by_name("odd.weight");
    assert_eq!(odd["status"], "copied");
    assert!(odd["reason"]
        .as_str()
        .unwrap()
        .contains("not divided by the block size"));
    assert!(by_name("embed_tokens.weight")["reason"]
        .as_str()
        .unwrap()
        .contains("embedding"));
    assert!(by_name("norm.weight")["reason"]
        .as_str()
        .unwrap()
        .contains("rank 1 (below 2)"));
    let totals = &report["totals"];
    assert_eq!(totals["quantized"], 5);
    assert_eq!(totals["copied"], TINY.len() - 5);
    assert!(totals["compression_ratio"].as_f64().unwrap() > 1.0);
    assert!(totals["wall_time_s"].as_f64().unwrap() > 0.0);
    assert_eq!(
        work.files(),
        BTreeSet::from([
            "tiny.safetensors".into(),
            "int4.safetensors".into(),
            "int4.json".into()
        ])
    );
}

/// `--hqq`: the summary and the report put each tensor's SQNR beside that of
/// plain min/max on the same weight, and the file records the recipe and
/// libtorch's thread count.
#[test]
fn hqq_reports_its_gain_over_min_max() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("u3-hqq.safetensors");
    let report = work.path("u3-hqq.json");
    let out = quantize(
        &input,
        &output,
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "32",
            "--hqq",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_ok(&out);
    let summary = text(&out.stdout);
    for needle in ["vs min/max", "HQQ against plain min/max", "use_hqq=true"] {
        assert!(
            summary.contains(needle),
            "{needle:?} missing from the summary:\n{summary}"
        );
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let quantized: Vec<&Value> = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "quantized")
        .collect();
    assert!(!quantized.is_empty());
    for t in quantized {
        let (hqq, plain) = (t["sqnr_db"].as_f64(), t["minmax_sqnr_db"].as_f64());
        assert!(hqq.is_some() && plain.is_some(), "{t}");
    }
    let (tensors, meta) = read_back(&output);
    // Plain uint8 codes and a float zero point, as torchao's PlainLayout.
    assert_eq!(
        tensors["layer.0.linear.weight.qdata"],
        (Dtype::U8, vec![16, 64])
    );
    let scheme: Value = serde_json::from_str(&meta["tch_quant.scheme"]).unwrap();
    assert_eq!(scheme["use_hqq"], true);
    assert!(scheme["torch_threads"].as_u64().is_some_and(|n| n >= 1));
    // Without --hqq there is no baseline and no gain column.
    let plain = quantize(
        &input,
        &work.path("u3.safetensors"),
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "32",
        ],
    );
    assert_ok(&plain);
    assert!(!text(&plain.stdout).contains("vs min/max"));
}

#[test]
fn multi_shard_packing_names_each_shard() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("u7.safetensors");
    assert_ok(&quantize(
        &input,
        &output,
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "7",
            "--group-size",
            "32",
        ],
    ));
    let (tensors, _) = read_back(&output);
    assert_eq!(
        tensors["layer.0.linear.weight.qdata.0"],
        (Dtype::U8, vec![16, 32])
    );
    assert_eq!(
        tensors["layer.0.linear.weight.qdata.1"],
        (Dtype::U8, vec![16, 16])
    );
    assert_eq!(
        tensors["layer.0.linear.weight.qdata.2"],
        (Dtype::U8, vec![16, 8])
    );
    assert_eq!(
        tensors["layer.0.linear.weight.zero_point"],
        (Dtype::I32, vec![16, 2])
    );
}

#[test]
fn dequantize_restores_names_shapes_and_dtypes() {
    let work = Work::new();
    let input = tiny(&work);
    let quantized = work.path("q.safetensors");
    assert_ok(&quantize(
        &input,
        &quantized,
        &["--scheme", "int8-weight-only"],
    ));
    let restored = work.path("r.safetensors");
    let out = tch_quant([
        "dequantize".as_ref(),
        quantized.as_os_str(),
        "-o".as_ref(),
        restored.as_os_str(),
    ]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("dequantized 6 tensors"),
        "{}",
        text(&out.stdout)
    );
    let (original, _) = read_back(&input);
    let (back, meta) = read_back(&restored);
    assert_eq!(back, original);
    assert!(!meta.keys().any(|k| k.starts_with("tch_quant.")));

    let bf16 = work.path("r16.safetensors");
    let out = tch_quant([
        "dequantize".as_ref(),
        quantized.as_os_str(),
        "-o".as_ref(),
        bf16.as_os_str(),
        "--dtype".as_ref(),
        "bf16".as_ref(),
    ]);
    assert_ok(&out);
    let (back, _) = read_back(&bf16);
    assert_eq!(back["layer.0.linear.weight"].0, Dtype::BF16);
    assert_eq!(
        back["layer.0.linear.bias"].0,
        Dtype::F32,
        "copied tensors keep their dtype"
    );
}

#[test]
fn inspect_describes_a_quantized_file() {
    let work = Work::new();
    let input = tiny(&work);
    let quantized = work.path("q.safetensors");
    assert_ok(&quantize(
        &input,
        &quantized,
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "16",
        ],
    ));
    let out = tch_quant(["inspect".as_ref(), quantized.as_os_str()]);
    assert_ok(&out);
    let table = text(&out.stdout);
    for needle in [
        "uintx-weight-only (bits=3, group_size=16)",
        "torchao 0.11.0",
        "uint3 packed, 2 shards",
        "1x16",
        "0..7",
        "position_ids",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    let out = tch_quant(["inspect".as_ref(), quantized.as_os_str(), "--json".as_ref()]);
    assert_ok(&out);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["quantized"].as_array().unwrap().len(),
        5,
        "odd.weight is not divided by 16"
    );
    assert_eq!(json["scheme"]["bits"], 3);
    let other = json["other"].as_array().unwrap();
    let position_ids = other.iter().find(|t| t["name"] == "position_ids").unwrap();
    assert_eq!(position_ids["dtype"], "int64");
    let plain = tch_quant(["inspect".as_ref(), input.as_os_str()]);
    assert_ok(&plain);
    assert!(text(&plain.stdout).contains("not written by tch-quant"));
}

#[test]
fn include_and_exclude_choose_the_tensors() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("q.safetensors");
    let out = quantize(
        &input,
        &output,
        &[
            "--scheme",
            "int8-weight-only",
            "--include",
            "embed",
            "--include",
            "^layer\\.0",
            "--exclude",
            "bias",
        ],
    );
    assert_ok(&out);
    let (tensors, _) = read_back(&output);
    assert!(tensors.contains_key("embed_tokens.weight.qdata"));
    assert!(tensors.contains_key("layer.0.linear.weight.qdata"));
    assert!(tensors.contains_key("layer.0.linear.bias"));
    assert!(
        tensors.contains_key("layer.1.linear.weight"),
        "not included, so copied"
    );
}

#[test]
fn sharded_input_gives_sharded_output_with_an_index() {
    let work = Work::new();
    let index = tiny_sharded(&work);
    let out_index = work.path("q.safetensors.index.json");
    assert_ok(&quantize(
        &index,
        &out_index,
        &["--scheme", "float8-weight-only"],
    ));
    let files = work.files();
    assert!(files.contains("q-00001-of-00002.safetensors"), "{files:?}");
    assert!(files.contains("q-00002-of-00002.safetensors"), "{files:?}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out_index).unwrap()).unwrap();
    let weight_map = json["weight_map"].as_object().unwrap();
    assert_eq!(
        weight_map["layer.0.linear.weight.qdata"],
        "q-00001-of-00002.safetensors"
    );
    assert_eq!(
        weight_map["experts.weight.scale"],
        "q-00002-of-00002.safetensors"
    );
    assert_eq!(weight_map["position_ids"], "q-00002-of-00002.safetensors");
    let (first, _) = read_back(&work.path("q-00001-of-00002.safetensors"));
    assert_eq!(
        first["layer.0.linear.weight.qdata"],
        (Dtype::F8_E4M3, vec![16, 64])
    );
    let stored: usize = [
        "q-00001-of-00002.safetensors",
        "q-00002-of-00002.safetensors",
    ]
    .iter()
    .map(|f| {
        let bytes = std::fs::read(work.path(f)).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes.len() - 8 - header
    })
    .sum();
    assert_eq!(json["metadata"]["total_size"], stored);

    let restored = work.path("r.safetensors.index.json");
    assert_ok(&tch_quant([
        "dequantize".as_ref(),
        out_index.as_os_str(),
        "-o".as_ref(),
        restored.as_os_str(),
    ]));
    assert!(work.files().contains("r-00002-of-00002.safetensors"));
}

/// Names beyond the largest format width (65,535) once made the summary and
/// `inspect` panic (exit 101), the summary after the outputs were
/// committed. They are shown whole, in every table and in the report.
#[test]
fn names_longer_than_any_format_width_are_shown_whole() {
    let work = Work::new();
    let input = work.path("long.safetensors");
    let long = format!("{}.weight", "x".repeat(1 << 16));
    let bytes = f32_bytes(8 * 64, 3);
    let view = TensorView::new(Dtype::F32, vec![8, 64], &bytes).unwrap();
    safetensors::serialize_to_file([(long.as_str(), view)], &None, &input).unwrap();
    let output = work.path("q.safetensors");
    let report = work.path("q.json");
    let out = quantize(
        &input,
        &output,
        &[
            "--scheme",
            "int8-weight-only",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_ok(&out);
    assert!(text(&out.stdout).contains(&long));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["tensors"][0]["name"], long.as_str());
    for file in [&input, &output] {
        let out = tch_quant(["inspect".as_ref(), file.as_os_str()]);
        assert_ok(&out);
        assert!(text(&out.stdout).contains(&long));
    }
}

/// A stdout that cannot take the summary (here `/dev/full`) once failed a
/// run whose outputs were already committed; the summary is made before
/// the commit and printing it cannot fail the run. `inspect`, whose output
/// is its product, reports the failure instead.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_cannot_fail_a_committed_run() {
    use std::process::{Command, Stdio};

    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("q.safetensors");
    let report = work.path("q.json");
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let out = Command::new(crate::BIN)
        .args(["quantize".as_ref(), input.as_os_str(), "-o".as_ref()])
        .arg(&output)
        .args(["--scheme", "int8-weight-only", "--report"])
        .arg(&report)
        .stdout(full())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(read_back(&output).1.contains_key("tch_quant.format"));
    assert!(report.exists());
    let restored = work.path("r.safetensors");
    let out = Command::new(crate::BIN)
        .args(["dequantize".as_ref(), output.as_os_str(), "-o".as_ref()])
        .arg(&restored)
        .stdout(full())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(restored.exists());
    let out = Command::new(crate::BIN)
        .args(["inspect".as_ref(), output.as_os_str()])
        .stdout(full())
        .output()
        .unwrap();
    crate::assert_refused(&out, 1, "cannot write to stdout");
}
