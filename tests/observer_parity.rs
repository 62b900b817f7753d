//! The calibration observers against torchao 0.11's on torch 2.13, bit for
//! bit: the committed fixtures (`tests/observers/fixtures`, written by
//! `tests/observers/oracle.py fixtures`), and live cases the oracle draws
//! and evaluates at test time (seeded random batches, and windows of
//! all-MiniLM-L6-v2's weights and activations), each feeding 1..16 batches;
//! then the typed errors.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the number of random cases (default 480; the
//! MiniLM windows are a sixth of it). The live test skips without the
//! project's `.venv` (fails with `TCH_QUANT_REQUIRE_ORACLE=1`), and runs on
//! CUDA too, against torchao observing on CUDA, when a device is present.

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "common/oracle.rs"]
mod common_oracle;
#[path = "common/live.rs"]
mod live;
#[path = "observers/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    AffineQuantizedMinMaxObserver, AffineQuantizedMovingAverageMinMaxObserver, Error, Granularity,
    MappingType, MinMaxObserver, MovingAverageMinMaxObserver, ObserverDtype,
    PerChannelMinMaxObserver, QParamsOptions, QScheme, QuantDtype, UniformObserverOptions,
};

/// Random cases per run without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 480;

/// Reductions meeting +0.0 and -0.0 return whichever their split reaches
/// first, so the replay runs on one thread, as the oracle did (every test
/// here sets the same count, so they cannot disturb each other).
fn one_thread() {
    tch::set_num_threads(1);
}

fn check_versions(oracle: &replay::Oracle) {
    assert_eq!(oracle.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.torchao, "0.11.0");
}

#[test]
fn fixture_observers_are_bit_identical() -> Result<()> {
    one_thread();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/observers/fixtures");
    let oracle = replay::Oracle::load(&dir)?;
    check_versions(&oracle);
    assert!(
        oracle.cases.len() >= 150,
        "{} fixture cases",
        oracle.cases.len()
    );
    oracle
        .replay_all(Device::Cpu)?
        .print_and_check("observer fixtures (cpu)");
    Ok(())
}

/// Runs `tests/observers/oracle.py random ...` once and loads what it wrote.
fn draw(python: &Path, seed: u64, count: usize, device: Device) -> Result<replay::Oracle> {
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tch-quant-observers-{dev}-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/observers/oracle.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).args([
        "random",
        "--seed",
        &seed.to_string(),
        "--count",
        &count.to_string(),
        "--device",
        dev,
    ]);
    if let Some(checkpoint) = common_oracle::minilm_checkpoint(python) {
        cmd.arg("--checkpoint")
            .arg(checkpoint)
            .args(["--minilm-count", &(count / 6).max(1).to_string()]);
    }
    let status = cmd
        .arg("--out")
        .arg(&dir)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("the observer oracle failed: {status}");
    }
    let oracle = replay::Oracle::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    oracle
}

#[test]
fn live_observers_are_bit_identical() -> Result<()> {
    one_thread();
    let Some(python) = common_oracle::oracle_python() else {
        return Ok(());
    };
    let (seed, count) = (live::seed(), live::count(COUNT));
    let mut devices = vec![Device::Cpu];
    if common_cuda::cuda_or_skip("observers live: skipped CUDA (not available)") {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let oracle = draw(&python, seed, count, device)?;
        check_versions(&oracle);
        println!(
            "observers live: seed {seed} (TCH_QUANT_PARITY_SEED), {} cases ({count} random, the \
             rest MiniLM windows) on {device:?}",
            oracle.cases.len()
        );
        oracle
            .replay_all(device)?
            .print_and_check(&format!("observers live ({device:?})"));
    }
    Ok(())
}

fn x(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn affine() -> AffineQuantizedMinMaxObserver {
    AffineQuantizedMinMaxObserver::new(
        MappingType::Asymmetric,
        QuantDtype::UInt8,
        Granularity::PerAxis(0),
        QParamsOptions::default(),
    )
    .expect("valid arguments")
}

fn assert_invalid(r: Result<impl std::fmt::Debug, Error>, want_arg: &str, want_value: &str) {
    match r {
        Err(Error::InvalidArgument { arg, value, .. }) => {
            assert_eq!((arg, value.as_str()), (want_arg, want_value))
        }
        other => panic!("expected InvalidArgument {want_arg} = {want_value}, got {other:?}"),
    }
}

#[test]
fn observer_errors_are_typed() {
    one_thread();
    let mut n = 0;
    // calculate_qparams before any batch, and after only an empty one.
    let mut obs = affine();
    obs.observe(&x(&[0, 4])).unwrap();
    assert_invalid(
        obs.calculate_qparams(),
        "self",
        "an observer that has seen no batch",
    );
    let opts = UniformObserverOptions::default();
    let pt = MinMaxObserver::new(QScheme::PerTensorAffine, &opts).unwrap();
    assert_invalid(
        pt.calculate_qparams(),
        "self",
        "an observer that has seen no batch",
    );
    n += 2;

    // Shape, dtype and device changes between batches.
    let mut obs = affine();
    obs.observe(&x(&[4, 8])).unwrap();
    assert!(matches!(
        obs.observe(&x(&[8, 8])),
        Err(Error::ShapeMismatch { arg: "x", ref got, .. }) if got == &[8, 8]
    ));
    assert!(matches!(
        obs.observe(&x(&[4, 8]).to_kind(Kind::BFloat16)),
        Err(Error::UnsupportedKind {
            arg: "x",
            got: Kind::BFloat16,
            ..
        })
    ));
    assert_eq!(obs.batches(), 1, "refused batches leave the state alone");
    let mut pc = PerChannelMinMaxObserver::new(0, QScheme::PerChannelAffine, &opts).unwrap();
    pc.observe(&x(&[1, 8])).unwrap();
    assert!(matches!(
        pc.observe(&x(&[4, 8])),
        Err(Error::ShapeMismatch { arg: "x", .. })
    ));
    assert!(matches!(
        pc.observe(&x(&[4])),
        Err(Error::ShapeMismatch { arg: "x", .. })
    ));
    n += 4;
    if tch::Cuda::is_available() {
        let cuda = x(&[4, 8]).to_device(Device::Cuda(0));
        assert!(matches!(
            obs.observe(&cuda),
            Err(Error::InvalidArgument { arg: "x", .. })
        ));
        n += 1;
    }

    // Non-float and non-strided batches.
    assert!(matches!(
        affine().observe(&Tensor::from_slice(&[1i32, 2]).view([1, 2])),
        Err(Error::UnsupportedKind {
            arg: "x",
            got: Kind::Int,
            ..
        })
    ));
    assert!(matches!(
        affine().observe(&x(&[4, 8]).to_sparse(None, None::<i64>, None)),
        Err(Error::UnsupportedLayout { arg: "x", .. })
    ));
    n += 2;

    // Bad averaging constants.
    for c in [0.0, -0.5, 1.5, f64::NAN] {
        assert_invalid(
            MovingAverageMinMaxObserver::new(c, QScheme::PerTensorAffine, &opts),
            "averaging_constant",
            &c.to_string(),
        );
        assert_invalid(
            AffineQuantizedMovingAverageMinMaxObserver::new(
                MappingType::Symmetric,
                QuantDtype::Int8,
                Granularity::PerTensor,
                c,
                QParamsOptions::default(),
            ),
            "averaging_constant",
            &c.to_string(),
        );
        n += 2;
    }

    // Bad quant ranges.
    let range = |qmin, qmax, dtype| UniformObserverOptions {
        dtype,
        quant_min: qmin,
        quant_max: qmax,
        ..Default::default()
    };
    let uniform = |o: UniformObserverOptions| MinMaxObserver::new(QScheme::PerTensorAffine, &o);
    assert_invalid(
        uniform(range(Some(1), Some(200), ObserverDtype::QUInt8)),
        "quant_min",
        "1 (quant_max 200)",
    );
    assert_invalid(
        uniform(range(Some(0), Some(255), ObserverDtype::QInt8)),
        "quant_max",
        "255",
    );
    assert_invalid(
        uniform(range(Some(-5), None, ObserverDtype::QInt8)),
        "quant_min",
        "-5",
    );
    let affine_range = |qmax| {
        AffineQuantizedMinMaxObserver::new(
            MappingType::Asymmetric,
            QuantDtype::UInt4,
            Granularity::PerTensor,
            QParamsOptions {
                quant_max: Some(qmax),
                ..Default::default()
            },
        )
    };
    assert_invalid(affine_range(16.0), "quant_max", "16");
    n += 4;

    // Granularities torchao's get_block_size refuses, schemes of the wrong
    // kind, a NaN that reaches torch.ao's qparams.
    assert_invalid(
        AffineQuantizedMinMaxObserver::new(
            MappingType::Symmetric,
            QuantDtype::Int8,
            Granularity::PerGroup(32),
            QParamsOptions::default(),
        ),
        "granularity",
        "per-group:32",
    );
    assert_invalid(
        MinMaxObserver::new(QScheme::PerChannelAffine, &opts),
        "qscheme",
        "per_channel_affine",
    );
    let mut nan = MinMaxObserver::new(QScheme::PerTensorAffine, &opts).unwrap();
    nan.observe(&Tensor::from_slice(&[1.0f32, f32::NAN]))
        .unwrap();
    assert_invalid(nan.calculate_qparams(), "self", "running min/max");
    n += 3;
    println!("observer errors: {n}/{n} typed");
}
