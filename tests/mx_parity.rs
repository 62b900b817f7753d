//! MX and NVFP4 against torchao 0.18.0 on torch 2.13.0, bit for bit: the
//! committed fixtures (`tests/mx/fixtures`, written by `tests/mx/oracle.py
//! fixtures`, `make mx-fixtures`) and live cases the oracle draws at test
//! time in one subprocess: seeded random tensors and slices of
//! all-MiniLM-L6-v2's real linear weights. Every case checks `to_mx`'s
//! scale and data, the dequantized outputs (`MxTensor::dequantize`,
//! `mx::to_dtype`, transposed too), `nvfp4_quantize`'s scales and packed
//! codes, `Nvfp4Tensor`'s scales and dequantized outputs, and
//! `per_tensor_amax_to_scale`; and that torchao's refusals are typed
//! errors here.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the random cases (default 300; MiniLM slices
//! are a fifth of it). The live half skips without `.venv-ao18` (fails with
//! `TCH_QUANT_REQUIRE_ORACLE=1`). The fixtures hold CPU results and replay
//! on the CPU; the live cases run on the CPU, and again on CUDA (torchao
//! evaluating them on the GPU too) when a device is available
//! (`TCH_QUANT_REQUIRE_CUDA=1` makes a missing one a failure).

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "common/oracle.rs"]
mod common_oracle;
#[path = "common/live.rs"]
mod live;
#[path = "mx/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::mx::{get_fp_scale, to_dtype};
use tch_quant::{
    nvfp4_quantize, per_tensor_amax_to_scale, to_mx, Error, MxElemDtype, MxTensor, Nvfp4Tensor,
    ScaleCalculationMode, NVFP4_BLOCK_SIZE,
};

/// Random cases without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 300;

fn check_versions(oracle: &replay::Oracle) {
    assert_eq!(oracle.store.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.store.torchao, "0.18.0");
}

/// The live cases evaluated by torchao on `device` and replayed there, and
/// how many are MiniLM slices.
fn live_report(
    python: &Path,
    checkpoint: Option<&Path>,
    seed: u64,
    n: usize,
    device: Device,
) -> Result<(replay::Report, usize)> {
    let minilm = if checkpoint.is_some() { n / 5 } else { 0 };
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let dir = std::env::temp_dir().join(format!("tch-quant-mx-{dev}-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mx/oracle.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args([
            "live",
            "--seed",
            &seed.to_string(),
            "--count",
            &n.to_string(),
        ])
        .args(["--device", dev, "--out"])
        .arg(&dir);
    if let Some(path) = checkpoint {
        cmd.arg("--minilm")
            .arg(path)
            .args(["--minilm-count", &minilm.to_string()]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("the mx oracle failed: {status}");
    }
    let oracle = replay::Oracle::load(&dir, device);
    let _ = std::fs::remove_dir_all(&dir);
    let oracle = oracle?;
    check_versions(&oracle);
    assert_eq!(
        oracle.store.cases.len(),
        n + minilm,
        "the oracle drew another count"
    );
    Ok((oracle.replay_all()?, minilm))
}

#[test]
fn fixtures_and_live_cases_are_bit_identical() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mx/fixtures");
    let oracle = replay::Oracle::load(&dir, Device::Cpu)?;
    check_versions(&oracle);
    let fixtures = oracle.replay_all()?;
    fixtures.check("mx fixtures");
    assert!(
        fixtures.computed >= 350,
        "{} computed fixtures",
        fixtures.computed
    );
    assert!(
        fixtures.refusals >= 10,
        "{} refusal fixtures",
        fixtures.refusals
    );
    let (same, all) = fixtures.total();

    let (seed, n) = (live::seed(), live::count(COUNT));
    let live = match common_oracle::oracle_python_ao18() {
        Some(python) => {
            let checkpoint = common_oracle::minilm_checkpoint(&python);
            let mut devices = vec![Device::Cpu];
            if common_cuda::cuda_or_skip("mx live: skipped CUDA (not available)") {
                devices.push(Device::Cuda(0));
            }
            let mut lines = Vec::new();
            for device in devices {
                let (report, minilm) =
                    live_report(&python, checkpoint.as_deref(), seed, n, device)?;
                report.check(&format!("mx live on {device:?} (seed {seed})"));
                let (m, total) = report.total();
                assert_eq!(total, n + minilm);
                let on = if device == Device::Cpu {
                    ""
                } else {
                    " on cuda"
                };
                lines.push(format!(
                    "live{on} {m}/{total} identical ({n} random + {minilm} all-MiniLM-L6-v2 \
                     slices, seed {seed})"
                ));
            }
            lines.join(", ")
        }
        None => format!("live skipped (seed {seed})"),
    };
    println!(
        "mx/nvfp4 torchao {}: fixtures {same}/{all} identical ({} computed, {} refused as torchao \
         refuses), {live}",
        oracle.store.torchao, fixtures.computed, fixtures.refusals
    );
    Ok(())
}

fn x(shape: &[i64], kind: Kind) -> Tensor {
    tch::manual_seed(3);
    Tensor::randn(shape, (kind, Device::Cpu))
}

/// The argument a typed refusal names; any other error fails the test.
fn arg(e: Error) -> &'static str {
    match e {
        Error::InvalidArgument { arg, .. }
        | Error::UnsupportedKind { arg, .. }
        | Error::ShapeMismatch { arg, .. }
        | Error::UnsupportedLayout { arg, .. } => arg,
        other => panic!("untyped refusal: {other}"),
    }
}

#[test]
fn mx_refusals_are_typed_and_name_the_argument() {
    use MxElemDtype::*;
    let floor = ScaleCalculationMode::Floor;
    let w = x(&[2, 64], Kind::Float);
    let (scale, data) = to_mx(&w, Fp6E2m3, 32, floor).unwrap();
    let (s4, d4) = to_mx(&w, Float4E2m1fnX2, 32, floor).unwrap();
    let sparse = w.to_sparse(None, None::<&[i64]>, None);
    let mx = |t: &Tensor, e, bs| to_mx(t, e, bs, floor).map(|_| ());
    let dq = |d: &Tensor, s: &Tensor, e, bs, k| to_dtype(d, s, e, bs, k).map(|_| ());
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        ("data_hp", mx(&w.to_kind(Kind::Half), Float8E4m3fn, 32)),
        ("data_hp", mx(&w.to_kind(Kind::Int), Float8E4m3fn, 32)),
        ("data_hp", mx(&w, Float8E5m2, 48)),
        ("block_size", mx(&w, Float8E5m2, 0)),
        ("block_size", mx(&w, Float8E5m2, -32)),
        ("data_hp", mx(&x(&[2, 5], Kind::Float), Float4E2m1fnX2, 5)),
        ("data_hp", mx(&Tensor::from(1.0f32), Float8E4m3fn, 1)),
        ("data_hp", mx(&sparse, Float8E4m3fn, 32)),
        ("data_lp", dq(&data, &scale, Float8E4m3fn, 32, Kind::Float)),
        (
            "scale_e8m0",
            dq(&data, &scale.to_kind(Kind::Int), Fp6E2m3, 32, Kind::Float),
        ),
        (
            "scale_e8m0",
            dq(&data, &scale.narrow(1, 0, 1), Fp6E2m3, 32, Kind::Float),
        ),
        ("scale_e8m0", dq(&d4, &s4, Float4E2m1fnX2, 16, Kind::Float)),
        ("target_dtype", dq(&data, &scale, Fp6E2m3, 32, Kind::Int64)),
        ("target_dtype", dq(&data, &scale, Fp6E2m3, 32, Kind::Int8)),
        ("block_size", dq(&data, &scale, Fp6E2m3, 0, Kind::Float)),
        (
            "data_lp",
            dq(
                &data.view([2, 2, 32]).transpose(1, 2),
                &scale,
                Fp6E2m3,
                32,
                Kind::Float,
            ),
        ),
        (
            "scale_e8m0",
            get_fp_scale(&scale.to_kind(Kind::Float)).map(|_| ()),
        ),
        ("name", MxElemDtype::parse("int8").map(|_| ())),
        ("name", ScaleCalculationMode::parse("round").map(|_| ())),
    ];
    for (want, got) in cases {
        assert_eq!(arg(got.expect_err(want)), want);
    }
    let bad = MxTensor {
        qdata: data.to_kind(Kind::Float8e4m3fn),
        scale: scale.shallow_clone(),
        elem_dtype: Fp6E2m3,
        block_size: 32,
        orig_dtype: Kind::Float,
    };
    assert_eq!(arg(bad.dequantize(None).unwrap_err()), "qdata");
}

#[test]
fn nvfp4_refusals_are_typed_and_name_the_argument() {
    let w = x(&[4, 32], Kind::Float);
    let s = Tensor::from(0.01f32);
    let q = |t: &Tensor, bs, pts: Option<&Tensor>| nvfp4_quantize(t, bs, pts).map(|_| ());
    let e3 = x(&[2, 4, 32], Kind::BFloat16);
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        ("data_hp", q(&w.to_kind(Kind::Half), 16, None)),
        ("block_size", q(&w, 32, None)),
        ("block_size", q(&w, 0, None)),
        ("data_hp", q(&x(&[4, 24], Kind::Float), 16, None)),
        ("data_hp", q(&x(&[32], Kind::Float), 16, None)),
        (
            "data_hp",
            q(
                &Tensor::zeros([0, 32], (Kind::Float, Device::Cpu)),
                16,
                None,
            ),
        ),
        (
            "per_tensor_scale",
            q(&w, 16, Some(&s.to_kind(Kind::BFloat16))),
        ),
        ("per_tensor_scale", q(&w, 16, Some(&s.view([1])))),
        (
            "per_tensor_scale",
            q(
                &w,
                16,
                Some(&Tensor::ones([4, 1, 1], (Kind::Float, Device::Cpu))),
            ),
        ),
        (
            "per_tensor_scale",
            q(
                &e3,
                16,
                Some(&Tensor::ones([3, 1, 1], (Kind::Float, Device::Cpu))),
            ),
        ),
        (
            "data_hp",
            Nvfp4Tensor::to_nvfp4(&x(&[2, 2, 2, 16], Kind::Float), 16, None).map(|_| ()),
        ),
        (
            "amax",
            per_tensor_amax_to_scale(&Tensor::from(3i64)).map(|_| ()),
        ),
    ];
    for (want, got) in cases {
        assert_eq!(arg(got.expect_err(want)), want);
    }
    let good = Nvfp4Tensor::to_nvfp4(&w, NVFP4_BLOCK_SIZE, Some(&s)).unwrap();
    let with = |f: &dyn Fn(&mut Nvfp4Tensor)| {
        let mut t = Nvfp4Tensor {
            qdata: good.qdata.shallow_clone(),
            scale: good.scale.shallow_clone(),
            per_tensor_scale: Some(s.shallow_clone()),
            block_size: 16,
            orig_dtype: Kind::Float,
        };
        f(&mut t);
        t.dequantize(None).map(|_| ())
    };
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        ("qdata", with(&|t| t.qdata = t.qdata.to_kind(Kind::Int8))),
        ("qdata", with(&|t| t.qdata = t.qdata.view([-1]))),
        ("scale", with(&|t| t.scale = t.scale.to_kind(Kind::Float))),
        ("scale", with(&|t| t.scale = t.scale.narrow(1, 0, 1))),
        ("block_size", with(&|t| t.block_size = 32)),
        (
            "per_tensor_scale",
            with(&|t| t.per_tensor_scale = Some(s.to_kind(Kind::Half))),
        ),
        ("orig_dtype", with(&|t| t.orig_dtype = Kind::Int64)),
    ];
    for (want, got) in cases {
        assert_eq!(arg(got.expect_err(want)), want);
    }
}

/// torchao asserts contiguous inputs; the crate quantizes a strided view
/// as its contiguous copy, byte for byte.
#[test]
fn strided_inputs_quantize_as_their_contiguous_copy() {
    let bytes = |t: &Tensor| store::raw_bytes(t).unwrap();
    let w = x(&[64, 6], Kind::BFloat16).transpose(0, 1);
    assert!(!w.is_contiguous());
    let dense = w.contiguous();
    for elem in MxElemDtype::ALL {
        assert_eq!(MxElemDtype::parse(elem.name()).unwrap(), elem);
        for mode in [
            ScaleCalculationMode::Floor,
            ScaleCalculationMode::Rceil,
            ScaleCalculationMode::Ceil,
            ScaleCalculationMode::Even,
        ] {
            let (s1, d1) = to_mx(&w, elem, 32, mode).unwrap();
            let (s2, d2) = to_mx(&dense, elem, 32, mode).unwrap();
            assert_eq!(
                (bytes(&s1), bytes(&d1)),
                (bytes(&s2), bytes(&d2)),
                "{elem} {mode}"
            );
        }
    }
    let (s1, d1) = nvfp4_quantize(&w, 16, None).unwrap();
    let (s2, d2) = nvfp4_quantize(&dense, 16, None).unwrap();
    assert_eq!((bytes(&s1), bytes(&d1)), (bytes(&s2), bytes(&d2)));
}
