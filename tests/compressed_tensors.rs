//! `tch-quant quantize --format compressed-tensors`, checked by the real
//! clients: `scripts/compressed_tensors_check.py` loads every export with
//! compressed-tensors 0.20.0 and transformers and compares it bit for bit
//! with torchao 0.11's quantization of the same weights (MiniLM, and a small
//! random bfloat16 BERT saved sharded by transformers itself). Without
//! compressed-tensors and transformers in `.venv` (`make test` installs
//! `requirements-ct.txt`) those tests skip, unless
//! `TCH_QUANT_REQUIRE_ORACLE=1`.

#[path = "common/oracle.rs"]
mod oracle;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oracle::{minilm_checkpoint, oracle_python};
use tch_quant::checkpoint::compressed_tensors::{export_file, AsymmetricLayout};
use tch_quant::{CheckpointErrorKind, Recipe, Selection};

const BIN: &str = env!("CARGO_BIN_EXE_tch-quant");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/compressed_tensors_check.py"
);

/// The oracle's Python when it also has compressed-tensors 0.20.0 and
/// transformers; `None` with a note otherwise (a failure under
/// `TCH_QUANT_REQUIRE_ORACLE=1`).
fn clients() -> Option<PathBuf> {
    let python = oracle_python()?;
    let probe = Command::new(&python)
        .args([
            "-c",
            "import compressed_tensors, transformers; \
             assert compressed_tensors.__version__.startswith('0.20.0')",
        ])
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    let why = match &probe {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var("TCH_QUANT_REQUIRE_ORACLE").as_deref() != Ok("1"),
        "TCH_QUANT_REQUIRE_ORACLE=1 but .venv has no compressed-tensors 0.20.0 + transformers \
         (make test installs requirements-ct.txt): {why}"
    );
    eprintln!("skipped: no compressed-tensors 0.20.0 + transformers in .venv (pip install -r requirements-ct.txt -c requirements-oracle.txt)");
    None
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Exports `input` into `dir` with `flags`.
fn export(input: &Path, dir: &Path, flags: &str) {
    let out = Command::new(BIN)
        .arg("quantize")
        .arg(input)
        .arg("-o")
        .arg(dir)
        .args(["--format", "compressed-tensors"])
        .args(flags.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{flags}: {}", text(&out));
}

/// Exports `input` with every `(name, flags)` and has the script check them
/// all in one run; returns its output.
fn export_and_check(python: &Path, input: &Path, work: &Path, schemes: &[(&str, &str)]) -> Output {
    let mut check = Command::new(python);
    check.arg(SCRIPT).arg(input);
    for (name, flags) in schemes {
        let dir = work.join(name);
        export(input, &dir, flags);
        check.arg("--export").arg(&dir).arg(flags);
    }
    check.output().unwrap()
}

fn assert_checked(out: &Output, schemes: &[(&str, &str)]) {
    let shown = text(out);
    println!("{shown}");
    assert!(out.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all bit-identical"), "{shown}");
    for (name, flags) in schemes {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no line for {name}: {shown}"));
        if flags.contains("--ct-asymmetric group") {
            assert!(line.contains("transformers: refused"), "{line}");
        } else {
            assert!(line.contains("transformers: loaded; cosine"), "{line}");
        }
    }
}

/// MiniLM: int8 per channel, uint4 group 32 and 128 (block layout, and the
/// group layout transformers refuses), float8 per channel; the script
/// prints the cosine of each to the float model's sentence embeddings.
#[test]
fn minilm_exports_load_in_compressed_tensors_and_transformers() {
    let Some(python) = clients() else { return };
    let Some(model) = minilm_checkpoint(&python) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let schemes = [
        ("int8", "--scheme int8-weight-only"),
        (
            "uint4-g32",
            "--scheme uintx-weight-only --bits 4 --group-size 32",
        ),
        (
            "uint4-g128",
            "--scheme uintx-weight-only --bits 4 --group-size 128",
        ),
        (
            "uint4-g32-group",
            "--scheme uintx-weight-only --bits 4 --group-size 32 --ct-asymmetric group",
        ),
        ("float8", "--scheme float8-weight-only"),
    ];
    let out = export_and_check(&python, &model, work.path(), &schemes);
    assert_checked(&out, &schemes);
    // The copied companions: the tokenizer and sentence-transformers files.
    for name in ["tokenizer.json", "vocab.txt", "modules.json"] {
        let a = std::fs::read(model.parent().unwrap().join(name)).unwrap();
        let b = std::fs::read(work.path().join("int8").join(name)).unwrap();
        assert!(a == b, "{name} not copied as it was");
    }
}

/// A sharded bfloat16 BERT (written by transformers' `save_pretrained`):
/// sharded output with its index, every bit width's packing (3 bits split
/// codes across words), int8 per group, float8; and the script fails on an
/// export checked against flags other than those that made it.
#[test]
fn sharded_bfloat16_exports_load_and_a_wrong_scheme_fails_the_check() {
    let Some(python) = clients() else { return };
    let work = tempfile::tempdir().unwrap();
    let made = Command::new(&python)
        .arg(SCRIPT)
        .arg("--make-synthetic")
        .arg(work.path().join("in"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let index = work.path().join("in/model.safetensors.index.json");
    let schemes = [
        ("u4", "--scheme uintx-weight-only --bits 4 --group-size 32"),
        ("u3", "--scheme uintx-weight-only --bits 3 --group-size 32"),
        ("u8", "--scheme uintx-weight-only --bits 8 --group-size 64"),
        (
            "u2-group",
            "--scheme uintx-weight-only --bits 2 --group-size 32 --ct-asymmetric group",
        ),
        ("int8-g32", "--scheme int8-weight-only --group-size 32"),
        ("fp8", "--scheme float8-weight-only"),
    ];
    let out = export_and_check(&python, &index, work.path(), &schemes);
    assert_checked(&out, &schemes);
    let shards = std::fs::read_dir(work.path().join("in"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        })
        .count();
    assert!(shards > 1, "the synthetic checkpoint is not sharded");
    for (name, _) in schemes {
        let dir = work.path().join(name);
        assert!(dir.join("model.safetensors.index.json").is_file(), "{name}");
        for i in 1..=shards {
            let shard = format!("model-{i:05}-of-{shards:05}.safetensors");
            assert!(dir.join(&shard).is_file(), "{name}: {shard}");
        }
    }

    // The u4 export, checked as if it were group size 64: the script must
    // see the difference.
    let wrong_flags = "--scheme uintx-weight-only --bits 4 --group-size 64";
    let wrong = Command::new(&python)
        .arg(SCRIPT)
        .arg(&index)
        .arg("--export")
        .arg(work.path().join("u4"))
        .arg(wrong_flags)
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains("MISMATCH"),
        "{}",
        text(&wrong)
    );
}

/// Writes a one-tensor float checkpoint.
fn tiny(path: &Path) {
    let w = tch::Tensor::randn([16, 64], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("l.weight", &w)], path).unwrap();
}

/// Recipes with no exact compressed-tensors scheme are refused by name,
/// before anything is written (no output directory is left), from the
/// library and the CLI alike.
#[test]
fn tinygemm_int4_and_custom_are_refused_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.safetensors");
    tiny(&input);
    let dir = work.path().join("out");
    let e = export_file(
        &input,
        &dir,
        &Recipe::Int4WeightOnly {
            group_size: 32,
            use_hqq: false,
        },
        &Selection::default(),
        AsymmetricLayout::Block,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("int4-weight-only"), "{e}");
    assert!(!dir.exists());
    for flags in [
        "--scheme int4-weight-only --group-size 32",
        "--scheme custom --mapping symmetric --dtype int8 --granularity per-row",
    ] {
        let out = Command::new(BIN)
            .arg("quantize")
            .arg(&input)
            .arg("-o")
            .arg(&dir)
            .args(["--format", "compressed-tensors"])
            .args(flags.split_whitespace())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("recipe"),
            "{flags}: {}",
            text(&out)
        );
        assert!(!dir.exists(), "{flags}: an output directory was left");
    }
}

/// An existing export is never replaced without `--force`, and is with it;
/// the output must not be the input's directory.
#[test]
fn existing_outputs_need_force_and_the_input_directory_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.safetensors");
    tiny(&input);
    std::fs::write(work.path().join("config.json"), "{\"model_type\": \"x\"}").unwrap();
    let dir = work.path().join("out");
    let recipe = Recipe::UIntXWeightOnly {
        bits: 4,
        group_size: 32,
        use_hqq: false,
    };
    let run = |force| {
        export_file(
            &input,
            &dir,
            &recipe,
            &Selection::default(),
            AsymmetricLayout::Block,
            force,
        )
    };
    let summary = run(false).unwrap();
    assert_eq!((summary.quantized, summary.copied), (1, 0));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "x");
    assert_eq!(
        config["quantization_config"]["format"], "pack-quantized",
        "{config}"
    );
    let header = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&header).unwrap();
    let names: Vec<String> = meta.tensors().into_keys().collect();
    for name in [
        "l.weight_packed",
        "l.weight_scale",
        "l.weight_zero_point",
        "l.weight_shape",
    ] {
        assert!(names.iter().any(|n| *n == name), "{name} in {names:?}");
    }
    let e = run(false).unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::OutputRefused),
        "{e}"
    );
    run(true).unwrap();
    let e = export_file(
        &input,
        work.path(),
        &recipe,
        &Selection::default(),
        AsymmetricLayout::Block,
        true,
    )
    .unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::OutputRefused),
        "{e}"
    );
}

/// Model files an earlier export left that this one does not write (an
/// index and shards of another count, which loaders would read instead)
/// are refused without `--force`, and removed with it once the new export
/// is in place; other files stay.
#[test]
fn stale_shards_of_an_earlier_export_need_force_and_are_removed() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.safetensors");
    tiny(&input);
    let dir = work.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let stale = [
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    for name in stale {
        std::fs::write(dir.join(name), "old").unwrap();
    }
    std::fs::write(dir.join("notes.md"), "mine").unwrap();
    let recipe = Recipe::Int8WeightOnly { group_size: None };
    let run = |force| {
        export_file(
            &input,
            &dir,
            &recipe,
            &Selection::default(),
            AsymmetricLayout::Block,
            force,
        )
    };
    let e = run(false).unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::OutputRefused),
        "{e}"
    );
    assert!(e.to_string().contains("earlier export"), "{e}");
    assert!(
        stale.iter().all(|n| dir.join(n).exists()),
        "refused runs remove nothing"
    );
    run(true).unwrap();
    for name in stale {
        assert!(
            !dir.join(name).exists(),
            "{name} was left beside the new export"
        );
    }
    assert!(dir.join("model.safetensors").is_file());
    assert_eq!(std::fs::read(dir.join("notes.md")).unwrap(), b"mine");
}

/// A chosen tensor compressed-tensors cannot name (not a
/// `<module>.weight`) fails the run before any work, leaving neither files
/// nor the output directory it created; the error names the tensor.
#[test]
fn a_failed_export_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.safetensors");
    let w = tch::Tensor::randn([16, 64], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("a.weight", &w), ("proj", &w)], &input).unwrap();
    let dir = work.path().join("out");
    let out = Command::new(BIN)
        .arg("quantize")
        .arg(&input)
        .arg("-o")
        .arg(&dir)
        .args([
            "--format",
            "compressed-tensors",
            "--scheme",
            "int8-weight-only",
        ])
        .args(["--include", "weight$", "--include", "^proj$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("proj"),
        "{}",
        text(&out)
    );
    assert!(!dir.exists(), "the output directory was left");
}
