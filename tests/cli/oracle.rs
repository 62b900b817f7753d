//! Bit-exactness against torchao 0.11.0, checked by
//! `scripts/torchao_check.py` with the oracle's Python.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{
    assert_ok, minilm_checkpoint, oracle_python, quantize, tch_quant, text, tiny, tiny_sharded,
    Work,
};

/// Every scheme the CLI offers, as arguments.
const SCHEMES: &[(&str, &[&str])] = &[
    ("int8", &["--scheme", "int8-weight-only"]),
    (
        "int8-g32",
        &["--scheme", "int8-weight-only", "--group-size", "32"],
    ),
    (
        "int4-g32",
        &["--scheme", "int4-weight-only", "--group-size", "32"],
    ),
    (
        "int4-g64",
        &["--scheme", "int4-weight-only", "--group-size", "64"],
    ),
    ("int4-g128", &["--scheme", "int4-weight-only"]),
    (
        "int4-g256",
        &["--scheme", "int4-weight-only", "--group-size", "256"],
    ),
    (
        "u1",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "1",
            "--group-size",
            "32",
        ],
    ),
    (
        "u2",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "2",
            "--group-size",
            "32",
        ],
    ),
    (
        "u3",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "32",
        ],
    ),
    ("u4", &["--scheme", "uintx-weight-only", "--bits", "4"]),
    (
        "u5",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "5",
            "--group-size",
            "16",
        ],
    ),
    (
        "u6",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "6",
            "--group-size",
            "32",
        ],
    ),
    (
        "u7",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "7",
            "--group-size",
            "32",
        ],
    ),
    (
        "u8",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "8",
            "--group-size",
            "32",
        ],
    ),
    ("fp8", &["--scheme", "float8-weight-only"]),
    // torchao's use_hqq=True, checked through torchao's HQQ at the thread
    // count the file records.
    (
        "int4-g32-hqq",
        &[
            "--scheme",
            "int4-weight-only",
            "--group-size",
            "32",
            "--hqq",
        ],
    ),
    (
        "u3-hqq",
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "32",
            "--hqq",
        ],
    ),
    (
        "custom-sym-int4",
        &[
            "--scheme",
            "custom",
            "--mapping",
            "symmetric",
            "--dtype",
            "int4",
            "--granularity",
            "per-group:32",
        ],
    ),
    (
        "custom-nce-int8",
        &[
            "--scheme",
            "custom",
            "--mapping",
            "symmetric-no-clipping-err",
            "--dtype",
            "int8",
            "--granularity",
            "per-axis:0",
            "--quant-min",
            "-127",
            "--zero-point-dtype",
            "int32",
        ],
    ),
    (
        "custom-asym-u4-float",
        &[
            "--scheme",
            "custom",
            "--mapping",
            "asymmetric",
            "--dtype",
            "uint4",
            "--granularity",
            "per-group:16",
            "--preserve-zero",
            "false",
            "--zero-point-domain",
            "float",
            "--eps",
            "1e-5",
            "--scale-dtype",
            "float32",
        ],
    ),
    (
        "custom-asym-u8-tensor",
        &[
            "--scheme",
            "custom",
            "--mapping",
            "asymmetric",
            "--dtype",
            "uint8",
            "--granularity",
            "per-tensor",
            "--zero-point-domain",
            "none",
        ],
    ),
    (
        "custom-e5m2",
        &[
            "--scheme",
            "custom",
            "--mapping",
            "symmetric",
            "--dtype",
            "float8_e5m2",
            "--granularity",
            "per-row",
            "--zero-point-domain",
            "none",
        ],
    ),
];

/// Quantizes `input` with every scheme (in parallel), dequantizes each, and
/// has torchao confirm every tensor bit for bit.
fn check_schemes_against_torchao(
    python: &Path,
    input: &Path,
    work: &Work,
    schemes: &[&(&str, &[&str])],
    also_check: &[(PathBuf, &[&str])],
) {
    let runs: Vec<(PathBuf, PathBuf, Output, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = schemes
            .iter()
            .map(|(name, args)| {
                scope.spawn(move || {
                    let quantized = work.path(&format!("{name}.safetensors"));
                    let restored = work.path(&format!("{name}-restored.safetensors"));
                    let q = quantize(input, &quantized, args);
                    let d = tch_quant([
                        "dequantize".as_ref(),
                        quantized.as_os_str(),
                        "-o".as_ref(),
                        restored.as_os_str(),
                    ]);
                    (quantized, restored, q, d)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut check = Command::new(python);
    check
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torchao_check.py"))
        .arg(input);
    for (quantized, _, q, d) in &runs {
        assert_ok(q);
        assert_ok(d);
        check.arg(quantized);
    }
    for (quantized, args) in also_check {
        check.arg(quantized);
        check.arg("--expect").arg(quantized).arg(args.join(" "));
    }
    for (quantized, restored, _, _) in &runs {
        check.arg("--dequantized").arg(quantized).arg(restored);
    }
    // The flags of every run, so that the script checks each file's records
    // against what the flags ask for, not against the file itself.
    for ((_, args), (quantized, _, _, _)) in schemes.iter().zip(&runs) {
        check.arg("--expect").arg(quantized).arg(args.join(" "));
    }
    let out = check.output().expect("python runs");
    let report = text(&out.stdout);
    eprintln!("{report}{}", text(&out.stderr));
    assert!(
        out.status.success(),
        "torchao_check found differences:\n{report}"
    );
    assert_eq!(
        report.matches("tch-quant dequantize").count(),
        schemes.len()
    );
    assert!(report.contains("torchao_check: all bit-identical"));
}

#[test]
fn every_scheme_is_bit_identical_to_torchao() {
    let Some(python) = oracle_python() else {
        return;
    };
    let work = Work::new();
    let input = tiny(&work);
    // A sharded output too: its tensors are the tiny checkpoint's, by name.
    let index = tiny_sharded(&work);
    let sharded = work.path("sharded-u5.safetensors.index.json");
    let args = [
        "--scheme",
        "uintx-weight-only",
        "--bits",
        "5",
        "--group-size",
        "32",
    ];
    assert_ok(&quantize(&index, &sharded, &args));
    let schemes: Vec<_> = SCHEMES.iter().collect();
    check_schemes_against_torchao(&python, &input, &work, &schemes, &[(sharded, &args)]);
}

/// The oracle itself: a file is held to the flags that made it, not to its
/// own records, and a custom file without flags is not passed.
#[test]
fn torchao_check_holds_files_to_their_flags() {
    let Some(python) = oracle_python() else {
        return;
    };
    let work = Work::new();
    let input = tiny(&work);
    let custom = work.path("custom.safetensors");
    let flags = "--scheme custom --mapping asymmetric --dtype uint4 --granularity per-group:32 \
                 --eps 1e-5";
    let args: Vec<&str> = flags.split_whitespace().collect();
    assert_ok(&quantize(&input, &custom, &args));
    let int4 = work.path("int4.safetensors");
    assert_ok(&quantize(
        &input,
        &int4,
        &["--scheme", "int4-weight-only", "--group-size", "32"],
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torchao_check.py");
    let check = |file: &Path, expect: Option<&str>| {
        let mut command = Command::new(&python);
        command.arg(&script).arg(&input).arg(file);
        if let Some(expect) = expect {
            command.arg("--expect").arg(file).arg(expect);
        }
        let out = command.output().expect("python runs");
        (out.status.code(), text(&out.stdout))
    };
    let (code, report) = check(&custom, Some(flags));
    assert_eq!(code, Some(0), "{report}");
    // The default eps (float32's) is not what the file records.
    let (code, report) = check(&custom, Some(&flags.replace(" --eps 1e-5", "")));
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("recorded args differs"), "{report}");
    let (code, report) = check(&custom, None);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("needs --expect"), "{report}");
    let (code, report) = check(&int4, Some("--scheme int4-weight-only --group-size 64"));
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("scheme differs"), "{report}");
    let (code, report) = check(&int4, Some("--scheme int4-weight-only --group-size 32"));
    assert_eq!(code, Some(0), "{report}");
}

/// The real checkpoint of the demo, when `make demo` has installed it.
#[test]
fn minilm_is_bit_identical_to_torchao_when_installed() {
    let Some(python) = oracle_python() else {
        return;
    };
    let Some(model) = minilm_checkpoint(&python) else {
        return;
    };
    let work = Work::new();
    // The presets' parity on MiniLM is the library's, tested in-process by
    // tests/recipe_parity.rs; here the command runs end to end on the real
    // checkpoint with one preset of each packing and every custom scheme,
    // whose flags only the command parses. `make check-minilm` runs every
    // scheme with a release build.
    let schemes: Vec<_> = SCHEMES
        .iter()
        .filter(|(name, _)| name.starts_with("custom") || ["int8", "int4-g32", "u3"].contains(name))
        .collect();
    check_schemes_against_torchao(&python, &model, &work, &schemes, &[]);
}
