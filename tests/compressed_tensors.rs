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
/// group layout transformers refuses), symmetric int4 group 32 and 128
/// (W4A16, a custom recipe), float8 per channel; the script prints the
/// cosine of each to the float model's sentence embeddings.
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
        (
            "int4-g32",
            "--scheme custom --mapping symmetric --dtype int4 --granularity per-group:32",
        ),
        (
            "int4-g128",
            "--scheme custom --mapping symmetric --dtype int4 --granularity per-group:128",
        ),
        ("float8", "--scheme float8-weight-only"),
    ];
    let out = export_and_check(&python, &model, work.path(), &schemes);
    assert_checked(&out, &schemes);
    // The copied companions: the tokenizer and sentence-transformers files,
    // subdirectories included.
    for name in [
        "tokenizer.json",
        "vocab.txt",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let a = std::fs::read(model.parent().unwrap().join(name)).unwrap();
        let b = std::fs::read(work.path().join("int8").join(name)).unwrap();
        assert!(a == b, "{name} not copied as it was");
    }
}

/// A sharded bfloat16 BERT (written by transformers' `save_pretrained`):
/// sharded output with its index, every bit width's packing (3 bits split
/// codes across words), int8 per group, float8, and custom recipes: signed
/// and unsigned codes, symmetric and asymmetric, per group, channel and
/// tensor, without a zero point; and the script fails on an export checked
/// against flags other than those that made it.
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
        (
            "i4-ch",
            "--scheme custom --mapping symmetric --dtype int4 --granularity per-axis:0",
        ),
        (
            "u4-sym-g32",
            "--scheme custom --mapping symmetric --dtype uint4 --granularity per-group:32",
        ),
        (
            "u8-sym-tensor",
            "--scheme custom --mapping symmetric --dtype uint8 --granularity per-tensor",
        ),
        (
            "i3-asym-g32",
            "--scheme custom --mapping asymmetric --dtype int3 --granularity per-group:32",
        ),
        (
            "i2-nozp-tensor",
            "--scheme custom --mapping symmetric-no-clipping-err --dtype int2 \
             --granularity per-tensor --zero-point-domain none",
        ),
        (
            "u4-asym-ch-group",
            "--scheme custom --mapping asymmetric --dtype uint4 --granularity per-row \
             --ct-asymmetric group",
        ),
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
fn tinygemm_int4_and_inexact_custom_recipes_are_refused_and_leave_nothing() {
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
        "--scheme custom --mapping symmetric --dtype int4 --granularity per-group:32 \
         --quant-min -7",
        "--scheme custom --mapping asymmetric --dtype uint4 --granularity per-group:32 \
         --preserve-zero false --zero-point-domain float",
        "--scheme custom --mapping symmetric --dtype float8_e4m3fn --granularity per-row",
        "--scheme custom --mapping symmetric --dtype int4 --granularity per-axis:1",
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

/// The input directory's subdirectories are copied (sentence-transformers'
/// `1_Pooling/`, nested ones, a module's own safetensors weights, files
/// symlinked from elsewhere as the Hugging Face cache links them), never the
/// weights the export replaces nor the output directory itself; existing
/// copies need `--force`; a symlinked directory that leaves the input
/// directory, or loops back into it, is refused before any work.
#[test]
fn subdirectories_are_copied_and_links_out_or_in_loops_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("model");
    std::fs::create_dir_all(model.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(model.join("2_Dense/inner")).unwrap();
    std::fs::create_dir_all(model.join(".cache")).unwrap();
    let input = model.join("model.safetensors");
    tiny(&input);
    std::fs::write(model.join("config.json"), "{\"model_type\": \"x\"}").unwrap();
    std::fs::write(model.join("1_Pooling/config.json"), "{\"pooling\": 1}").unwrap();
    std::fs::write(model.join("2_Dense/config.json"), "{\"dense\": 2}").unwrap();
    tiny(&model.join("2_Dense/model.safetensors"));
    std::fs::write(model.join("2_Dense/inner/notes.txt"), "deep").unwrap();
    std::fs::write(model.join(".cache/x.json"), "hidden").unwrap();
    std::fs::write(work.path().join("blob"), "linked").unwrap();
    std::os::unix::fs::symlink(
        work.path().join("blob"),
        model.join("1_Pooling/linked.json"),
    )
    .unwrap();
    let recipe = Recipe::Int8WeightOnly { group_size: None };
    let export = |dir: &Path, force| {
        export_file(
            &input,
            dir,
            &recipe,
            &Selection::default(),
            AsymmetricLayout::Block,
            force,
        )
    };
    // An output directory inside the input's is not copied into itself.
    let out = model.join("exported");
    export(&out, false).unwrap();
    for name in [
        "1_Pooling/config.json",
        "1_Pooling/linked.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "2_Dense/inner/notes.txt",
    ] {
        let copied = out.join(name);
        assert!(
            !std::fs::symlink_metadata(&copied)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name} is a link"
        );
        assert_eq!(
            std::fs::read(&copied).unwrap(),
            std::fs::read(model.join(name)).unwrap(),
            "{name}"
        );
    }
    assert!(!out.join(".cache").exists());
    assert!(!out.join("exported").exists());
    // The export's own model.safetensors is the quantized one.
    let header = std::fs::read(out.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&header).unwrap();
    assert!(meta.tensors().contains_key("l.weight_scale"));
    let e = export(&out, false).unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::OutputRefused),
        "{e}"
    );
    export(&out, true).unwrap();

    // A directory linked from outside the input directory.
    std::fs::create_dir(work.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(work.path().join("elsewhere"), model.join("3_Out")).unwrap();
    let fresh = work.path().join("fresh");
    let e = export(&fresh, false).unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::InvalidInput),
        "{e}"
    );
    assert!(e.to_string().contains("3_Out"), "{e}");
    assert!(!fresh.exists(), "a refused export left its directory");
    std::fs::remove_file(model.join("3_Out")).unwrap();

    // A loop: a subdirectory linking back to the input directory.
    std::os::unix::fs::symlink(&model, model.join("2_Dense/inner/up")).unwrap();
    let e = export(&fresh, false).unwrap_err();
    assert_eq!(
        e.checkpoint_kind(),
        Some(CheckpointErrorKind::InvalidInput),
        "{e}"
    );
    assert!(e.to_string().contains("loop"), "{e}");
    assert!(!fresh.exists(), "a refused export left its directory");
}

/// A weight larger than one piece (8 MiB) is quantized and stored in pieces
/// of rows when its scheme's scales are per row: every stored tensor is
/// bit-identical to the whole weight's quantization stored at once (which
/// the script checks against torchao and compressed-tensors), for packed
/// asymmetric codes with the zero point packed along dim 0 across pieces
/// and symmetric int4; a weight with a NaN (whose scale's bits depend on
/// the shape it is computed in) falls back to the whole, or is refused by
/// name where its zero point (int32's minimum) cannot be stored.
#[test]
fn weights_stored_in_pieces_are_bit_identical_to_whole_ones() {
    use tch::{Kind, Tensor};
    use tch_quant::checkpoint::compressed_tensors::{tensors::stored_tensors, CtScheme};
    use tch_quant::{
        AffineQuantizedTensor, CustomRecipe, Granularity, MappingType, QParamsOptions, QuantDtype,
    };

    let work = tempfile::tempdir().unwrap();
    tch::manual_seed(7);
    // 2056 float32 rows of 1024: 8.0 MiB and 32 KiB, two pieces.
    let a = Tensor::randn([2056, 1024], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::randn([2056, 1024], (Kind::Float, tch::Device::Cpu));
    let _ = b.get(2050).get(3).fill_(f64::NAN);
    let clean = work.path().join("clean.safetensors");
    let nan = work.path().join("nan.safetensors");
    Tensor::write_safetensors(&[("a.weight", &a)], &clean).unwrap();
    Tensor::write_safetensors(&[("b.weight", &b)], &nan).unwrap();
    // libtorch's ops rather than the fused kernel, which the debug profile
    // leaves unoptimized (the same bits: tests/parity_live.rs).
    let custom = |mapping, dtype, granularity| {
        Recipe::Custom(CustomRecipe {
            mapping,
            dtype,
            granularity,
            options: QParamsOptions {
                force_reference: true,
                ..Default::default()
            },
        })
    };
    let cases = [
        (
            custom(
                MappingType::Asymmetric,
                QuantDtype::UInt3,
                Granularity::PerGroup(64),
            ),
            AsymmetricLayout::Group,
        ),
        (
            custom(
                MappingType::Symmetric,
                QuantDtype::Int4,
                Granularity::PerGroup(128),
            ),
            AsymmetricLayout::Block,
        ),
    ];
    for (i, (recipe, layout)) in cases.iter().enumerate() {
        let scheme = CtScheme::for_recipe(recipe, *layout).unwrap();
        let mut count = 0;
        for (input, name, w) in [(&clean, "a.weight", &a), (&nan, "b.weight", &b)] {
            let dir = work.path().join(format!("out{i}-{name}"));
            let exported = export_file(input, &dir, recipe, &Selection::default(), *layout, false);
            if matches!(scheme, CtScheme::PackedAsymmetric { .. }) && name == "b.weight" {
                // torchao's zero point of the NaN's block is int32's minimum.
                let e = exported.unwrap_err();
                assert_eq!(
                    e.checkpoint_kind(),
                    Some(CheckpointErrorKind::Unquantizable),
                    "{e}"
                );
                assert!(e.to_string().contains("b.weight"), "{e}");
                continue;
            }
            exported.unwrap();
            let stored: std::collections::HashMap<String, Tensor> =
                Tensor::read_safetensors(dir.join("model.safetensors"))
                    .unwrap()
                    .into_iter()
                    .collect();
            let q = AffineQuantizedTensor::quantize(w, recipe).unwrap();
            for (key, want) in stored_tensors(name, &q, &scheme).unwrap() {
                let got = &stored[&key];
                assert_eq!(got.kind(), want.kind(), "{recipe}: {key}");
                assert_eq!(got.size(), want.size(), "{recipe}: {key}");
                let same = match want.kind() {
                    Kind::Float | Kind::BFloat16 | Kind::Half => got
                        .view_dtype(Kind::Int)
                        .equal(&want.contiguous().view_dtype(Kind::Int)),
                    _ => got.equal(&want),
                };
                assert!(same, "{recipe}: {key} differs from the whole weight's");
                count += 1;
            }
        }
        println!("pieces {recipe}: {count}/{count} stored tensors bit-identical");
    }
}
