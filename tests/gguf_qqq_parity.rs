//! The GGUF and QQQ primitives against torchao 0.11 on torch 2.13, bit for
//! bit: the committed fixtures (`tests/gguf_qqq/fixtures`, written by
//! `tests/gguf_qqq/oracle.py fixtures`), and live cases the oracle draws at
//! test time in one subprocess: seeded random weights and slices of
//! all-MiniLM-L6-v2's real linear weights.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the random cases per family (default 420; the
//! MiniLM slices are a quarter of it, at least 120). The live test skips
//! without the project's `.venv` (fails with `TCH_QUANT_REQUIRE_ORACLE=1`).
//! Cases run on CPU: the fixtures hold CPU results and the oracle draws on
//! CPU.

#[path = "common/oracle.rs"]
mod common_oracle;
#[path = "common/live.rs"]
mod live;
#[path = "gguf_qqq/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_and_quantize_affine_qqq, choose_qparams_gguf, dequantize_affine_qqq,
    dequantize_gguf, gguf_weight_only, quantize_gguf, Error, QuantDtype,
};

/// Random cases per family without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 420;

fn check_versions(oracle: &replay::Oracle) {
    assert_eq!(oracle.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.torchao, "0.11.0");
}

#[test]
fn fixtures_are_bit_identical() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_qqq/fixtures");
    let oracle = replay::Oracle::load(&dir)?;
    check_versions(&oracle);
    let report = oracle.replay_all()?;
    report.print_and_check(&format!(
        "gguf_qqq fixtures ({} cases, cpu, torchao {})",
        oracle.cases.len(),
        oracle.torchao
    ));
    for family in ["gguf", "qqq"] {
        let t = &report.by_family[family];
        assert!(
            t.computed >= 300,
            "the fixtures hold {} computed {family} cases",
            t.computed
        );
        assert!(
            t.refusals >= 20,
            "the fixtures hold {} {family} refusals",
            t.refusals
        );
    }
    Ok(())
}

#[test]
fn live_random_and_minilm_are_bit_identical() -> Result<()> {
    let Some(python) = common_oracle::oracle_python() else {
        return Ok(());
    };
    let checkpoint = common_oracle::minilm_checkpoint(&python);
    let (seed, n) = (live::seed(), live::count(COUNT));
    let minilm = if checkpoint.is_some() {
        (n / 4).max(120)
    } else {
        0
    };
    let dir = std::env::temp_dir().join(format!("tch-quant-gguf-qqq-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_qqq/oracle.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .args([
            "random",
            "--seed",
            &seed.to_string(),
            "--count",
            &n.to_string(),
        ])
        .arg("--out")
        .arg(&dir);
    if let Some(path) = &checkpoint {
        cmd.arg("--minilm")
            .arg(path)
            .args(["--minilm-count", &minilm.to_string()]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("the gguf_qqq oracle failed: {status}");
    }
    let oracle = replay::Oracle::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let oracle = oracle?;
    check_versions(&oracle);
    assert_eq!(
        oracle.cases.len(),
        2 * (n + minilm),
        "the oracle drew another count"
    );
    let real = oracle
        .cases
        .iter()
        .filter(|c| c["id"].as_str().is_some_and(|id| id.contains("minilm:")))
        .count();
    assert_eq!(real, 2 * minilm);
    let report = oracle.replay_all()?;
    report.print_and_check(&format!(
        "gguf_qqq live: seed {seed} (TCH_QUANT_PARITY_SEED), {n} random + {minilm} \
         all-MiniLM-L6-v2 slices per family, cpu"
    ));
    for family in ["gguf", "qqq"] {
        let (cases, matched) = report.family(family);
        assert_eq!(cases, n + minilm);
        assert_eq!(matched, cases);
    }
    Ok(())
}

fn w(shape: &[i64], kind: Kind) -> Tensor {
    tch::manual_seed(7);
    Tensor::randn(shape, (kind, Device::Cpu))
}

#[test]
fn gguf_refusals_are_typed_and_name_the_argument() {
    let x = w(&[2, 256], Kind::Float);
    let qp = choose_qparams_gguf(&x, &[1, 32], QuantDtype::UInt4).unwrap();
    let arg = |e: Error| match e {
        Error::InvalidArgument { arg, .. }
        | Error::UnsupportedKind { arg, .. }
        | Error::ShapeMismatch { arg, .. } => arg,
        other => panic!("untyped refusal: {other}"),
    };
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        (
            "target_dtype",
            choose_qparams_gguf(&x, &[1, 32], QuantDtype::Int8).map(|_| ()),
        ),
        (
            "input",
            choose_qparams_gguf(&x.to_kind(Kind::Double), &[1, 32], QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "input",
            choose_qparams_gguf(&x.to_kind(Kind::Int), &[1, 32], QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "block_size",
            choose_qparams_gguf(&x, &[1, -32], QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "block_size",
            choose_qparams_gguf(&x, &[1, 256], QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "target_dtype",
            quantize_gguf(&x, &[1, 32], QuantDtype::UInt8, &qp).map(|_| ()),
        ),
        (
            "block_size",
            quantize_gguf(
                &w(&[2, 2, 256], Kind::Float),
                &[1, 1, 32],
                QuantDtype::UInt4,
                &qp,
            )
            .map(|_| ()),
        ),
        // Blocks spanning both rows: one super-block scale where there are two.
        (
            "super_block_scale_scale",
            quantize_gguf(&x, &[2, 32], QuantDtype::UInt4, &qp).map(|_| ()),
        ),
        (
            "quantized_block_scale",
            quantize_gguf(&x, &[1, 64], QuantDtype::UInt4, &qp).map(|_| ()),
        ),
        (
            "input",
            dequantize_gguf(
                &x.to_kind(Kind::Bool),
                &[1, 32],
                QuantDtype::UInt4,
                &qp,
                None,
            )
            .map(|_| ()),
        ),
        (
            "output_dtype",
            dequantize_gguf(&x, &[1, 32], QuantDtype::UInt4, &qp, Some(Kind::Int)).map(|_| ()),
        ),
        (
            "weight",
            gguf_weight_only(&w(&[2, 384], Kind::Float), 8, QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "n_blocks_per_superblock",
            gguf_weight_only(&x, 0, QuantDtype::UInt4).map(|_| ()),
        ),
        (
            "n_blocks_per_superblock",
            gguf_weight_only(&x, 512, QuantDtype::UInt4).map(|_| ()),
        ),
    ];
    for (want, got) in cases {
        assert_eq!(arg(got.expect_err(want)), want);
    }
    let bad = tch_quant::GgufQParams {
        super_block_scale_scale: qp.super_block_scale_scale.to_kind(Kind::Int),
        super_block_min_scale: qp.super_block_min_scale.shallow_clone(),
        quantized_block_scale: qp.quantized_block_scale.shallow_clone(),
        quantized_block_min: qp.quantized_block_min.shallow_clone(),
    };
    let e = quantize_gguf(&x, &[1, 32], QuantDtype::UInt4, &bad).unwrap_err();
    assert_eq!(arg(e), "super_block_scale_scale");
}

#[test]
fn qqq_refusals_are_typed_and_name_the_argument() {
    let x = w(&[4, 256], Kind::Half);
    let q = choose_qparams_and_quantize_affine_qqq(&x, 4, 128).unwrap();
    let arg = |e: Error| match e {
        Error::InvalidArgument { arg, .. }
        | Error::UnsupportedKind { arg, .. }
        | Error::ShapeMismatch { arg, .. } => arg,
        other => panic!("untyped refusal: {other}"),
    };
    let choose =
        |t: &Tensor, bits, gs| choose_qparams_and_quantize_affine_qqq(t, bits, gs).map(|_| ());
    let dq = |w: &Tensor, g: &Tensor, c: &Tensor, gs, out| {
        dequantize_affine_qqq(w, g, c, 4, gs, out).map(|_| ())
    };
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        ("num_bits", choose(&x, 8, 128)),
        ("group_size", choose(&x, 4, 64)),
        ("group_size", choose(&w(&[2, 200], Kind::Float), 4, 128)),
        ("w", choose(&w(&[256], Kind::Float), 4, -1)),
        ("w", choose(&x.to_kind(Kind::Double), 4, -1)),
        (
            "w",
            choose(&Tensor::zeros([0, 256], (Kind::Float, Device::Cpu)), 4, 128),
        ),
        ("w", dq(&x, &q.s_group, &q.s_channel, 128, None)),
        ("s_group", dq(&q.q_w, &q.s_channel, &q.s_channel, 128, None)),
        ("s_channel", dq(&q.q_w, &q.s_group, &q.s_group, 128, None)),
        (
            "s_channel",
            dq(
                &q.q_w,
                &q.s_group,
                &q.s_channel.to_kind(Kind::Int),
                128,
                None,
            ),
        ),
        (
            "output_dtype",
            dq(&q.q_w, &q.s_group, &q.s_channel, 128, Some(Kind::Int8)),
        ),
        (
            "num_bits",
            dequantize_affine_qqq(&q.q_w, &q.s_group, &q.s_channel, 2, 128, None).map(|_| ()),
        ),
    ];
    for (want, got) in cases {
        assert_eq!(arg(got.expect_err(want)), want);
    }
}
