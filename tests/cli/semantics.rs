//! `--semantics 0.18`: the torchao 0.18 recipes the command offers, the
//! release each file records, `dequantize` following it, torchao 0.18.0
//! itself checking the files bit for bit (`scripts/torchao_check.py` on
//! `.venv-ao18`), and the schemes that have no 0.18 recipe refused with
//! exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{assert_ok, assert_refused, quantize, read_back, tch_quant, text, tiny, Work};

/// The schemes `--semantics 0.18` maps to a torchao 0.18 config, with the
/// scheme name the file records.
const SCHEMES: &[(&str, &[&str], &str)] = &[
    (
        "int8",
        &["--scheme", "int8-weight-only", "--semantics", "0.18"],
        "int8-weight-only-v2",
    ),
    (
        "int8-g32",
        &[
            "--scheme",
            "int8-weight-only",
            "--group-size",
            "32",
            "--semantics",
            "0.18",
        ],
        "int8-weight-only-v2",
    ),
    (
        "float8",
        &["--scheme", "float8-weight-only", "--semantics", "0.18.0"],
        "float8-weight-only-v2",
    ),
    (
        "intx4-g32",
        &[
            "--scheme",
            "intx-weight-only",
            "--bits",
            "4",
            "--group-size",
            "32",
            "--semantics",
            "0.18",
        ],
        "intx-weight-only",
    ),
];

#[test]
fn semantics_0_18_is_recorded_followed_and_bit_identical_to_torchao_0_18() {
    let work = Work::new();
    let input = tiny(&work);
    // One thread per scheme: each quantizes, inspects and dequantizes.
    let pairs: Vec<(PathBuf, PathBuf)> = std::thread::scope(|scope| {
        let handles: Vec<_> = SCHEMES
            .iter()
            .map(|(name, args, recorded)| {
                let (work, input) = (&work, &input);
                scope.spawn(move || {
                    let quantized = work.path(&format!("{name}.safetensors"));
                    let restored = work.path(&format!("{name}-restored.safetensors"));
                    assert_ok(&quantize(input, &quantized, args));
                    let (_, meta) = read_back(&quantized);
                    assert_eq!(meta["tch_quant.torchao_version"], "0.18.0", "{name}");
                    let scheme: Value = serde_json::from_str(&meta["tch_quant.scheme"]).unwrap();
                    assert_eq!(scheme["name"], *recorded, "{name}");
                    let records: Value = serde_json::from_str(&meta["tch_quant.tensors"]).unwrap();
                    let records = records.as_object().unwrap();
                    assert!(!records.is_empty(), "{name}: nothing quantized");
                    for (tensor, r) in records {
                        assert_eq!(r["semantics"], "0.18", "{name}: {tensor}");
                    }
                    let inspect = tch_quant(["inspect".as_ref(), quantized.as_os_str()]);
                    assert_ok(&inspect);
                    assert!(text(&inspect.stdout).contains("0.18.0"), "{name}: inspect");
                    assert_ok(&tch_quant([
                        "dequantize".as_ref(),
                        quantized.as_os_str(),
                        "-o".as_ref(),
                        restored.as_os_str(),
                    ]));
                    (quantized, restored)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A 0.11 file beside them keeps recording 0.11.
    let old = work.path("int8-0.11.safetensors");
    assert_ok(&quantize(&input, &old, &["--scheme", "int8-weight-only"]));
    let (_, meta) = read_back(&old);
    assert_eq!(meta["tch_quant.torchao_version"], "0.11.0");
    assert!(!meta["tch_quant.tensors"].contains("semantics"));

    let Some(python) = crate::common_oracle::oracle_python_ao18() else {
        return;
    };
    let mut check = Command::new(&python);
    check
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torchao_check.py"))
        .arg(&input)
        .args(pairs.iter().map(|(q, _)| q));
    for (quantized, restored) in &pairs {
        check.arg("--dequantized").arg(quantized).arg(restored);
    }
    let out = check.output().expect("python runs");
    let report = text(&out.stdout);
    eprintln!("{report}{}", text(&out.stderr));
    assert!(
        out.status.success(),
        "torchao 0.18 found differences:\n{report}"
    );
    assert_eq!(
        report.matches("tch-quant dequantize").count(),
        SCHEMES.len()
    );
    assert!(report.contains("torchao_check: all bit-identical"));

    // The 0.18 oracle does not pass a 0.11 file off as checked.
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torchao_check.py"))
        .arg(&input)
        .arg(&old)
        .output()
        .expect("python runs");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("reproduces torchao 0.11.0"));
}

#[test]
fn schemes_without_a_0_18_recipe_are_refused() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    for (args, scheme) in [
        (
            &["--scheme", "int4-weight-only", "--group-size", "32"][..],
            "int4-weight-only",
        ),
        (
            &["--scheme", "int4-weight-only", "--hqq"][..],
            "int4-weight-only",
        ),
        (
            &["--scheme", "uintx-weight-only", "--bits", "4"][..],
            "uintx-weight-only",
        ),
        (
            &[
                "--scheme",
                "custom",
                "--mapping",
                "symmetric",
                "--dtype",
                "int8",
                "--granularity",
                "per-row",
            ][..],
            "custom",
        ),
    ] {
        let mut full = args.to_vec();
        full.extend(["--semantics", "0.18"]);
        let out = quantize(&input, &output, &full);
        assert_refused(&out, 2, "--semantics 0.18");
        assert_refused(&out, 2, &format!("--scheme {scheme}"));
        assert!(!output.exists(), "{scheme}: nothing is written");
    }
    // The compressed-tensors export maps 0.11's recipes only.
    let out = quantize(
        &input,
        &work.path("ct"),
        &[
            "--scheme",
            "float8-weight-only",
            "--semantics",
            "0.18",
            "--format",
            "compressed-tensors",
        ],
    );
    assert_refused(&out, 2, "is a torchao 0.18 recipe");
    // intx-weight-only exists only in torchao 0.18.
    let out = quantize(
        &input,
        &output,
        &["--scheme", "intx-weight-only", "--bits", "4"],
    );
    assert_refused(&out, 2, "needs --semantics 0.18");
    let out = quantize(
        &input,
        &output,
        &["--scheme", "int8-weight-only", "--semantics", "0.12"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("0.12"));
}
