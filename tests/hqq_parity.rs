//! HQQ (`choose_qparams_and_quantize_affine_hqq`) against torchao 0.11 on
//! torch 2.13, bit for bit: codes, scale, zero, shape and the number of
//! solver iterations torchao ran (the early stop compares float errors, so
//! one ulp of drift would change it). The committed fixtures
//! (`tests/hqq/fixtures`, written by `tests/hqq/oracle.py fixtures`), and
//! live cases one oracle run draws and evaluates at test time: seeded
//! random tensors and options, and slices of all-MiniLM-L6-v2's linear
//! weights. Calls torchao refuses are refused here with an error naming
//! the argument; the refusals where torchao computes nonsense or crashes
//! are tested without the oracle.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the number of random cases (default 400; the
//! MiniLM slices are 3/10 of it). The live test skips without the
//! project's `.venv` (fails with `TCH_QUANT_REQUIRE_ORACLE=1`), and runs on
//! CUDA too, against torchao on CUDA, when a device is present.

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "common/oracle.rs"]
mod common_oracle;
#[path = "common/live.rs"]
mod live;
#[path = "hqq/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::{choose_qparams_and_quantize_affine_hqq, HqqOptions, HqqSolverOptions};

/// Random cases per run without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 400;

fn check_versions(oracle: &replay::Oracle) {
    assert_eq!(oracle.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.torchao, "0.11.0");
}

#[test]
fn fixture_hqq_is_bit_identical_on_cpu() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hqq/fixtures");
    let oracle = replay::Oracle::load(&dir)?;
    check_versions(&oracle);
    let report = oracle.replay_all(Device::Cpu)?;
    report.print_and_check(&format!(
        "hqq fixtures ({} cases, cpu, {} torch thread(s), torchao {})",
        report.cases(),
        oracle.threads,
        oracle.torchao
    ));
    assert!(
        report.computed() >= 300,
        "expected at least 300 computed fixture cases, found {}",
        report.computed()
    );
    for nbits in 1..=8 {
        let n = report
            .by_mode
            .get(&format!("nbits {nbits}"))
            .map_or(0, |t| t.computed);
        assert!(
            n >= 20,
            "the fixtures hold {n} computed nbits {nbits} cases"
        );
    }
    let early: usize = report
        .iterations
        .iter()
        .filter(|(n, _)| (1..20).contains(*n))
        .map(|(_, c)| c)
        .sum();
    assert!(early >= 50, "only {early} fixture cases stopped early");
    Ok(())
}

#[test]
fn live_hqq_is_bit_identical_on_random_and_minilm_weights() -> Result<()> {
    let Some(python) = common_oracle::oracle_python() else {
        return Ok(());
    };
    let checkpoint = common_oracle::minilm_checkpoint(&python);
    let (seed, n) = (live::seed(), live::count(COUNT));
    let minilm = if checkpoint.is_some() {
        (n * 3 / 10).max(1)
    } else {
        0
    };
    let mut devices = vec![Device::Cpu];
    if common_cuda::cuda_or_skip("hqq live: skipped CUDA (not available)") {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
        let dir = std::env::temp_dir().join(format!("tch-quant-hqq-{dev}-{}", std::process::id()));
        let mut cmd = Command::new(&python);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hqq/oracle.py"))
            .args([
                "random",
                "--seed",
                &seed.to_string(),
                "--count",
                &n.to_string(),
            ])
            .args(["--device", dev, "--out"])
            .arg(&dir);
        if let Some(c) = &checkpoint {
            cmd.arg("--minilm")
                .arg(c)
                .args(["--minilm-count", &minilm.to_string()]);
        }
        let status = cmd
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!("the hqq oracle failed: {status}");
        }
        let oracle = replay::Oracle::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let oracle = oracle?;
        check_versions(&oracle);
        assert_eq!(
            oracle.cases.len(),
            n + minilm,
            "the oracle drew another count"
        );
        let report = oracle.replay_all(device)?;
        report.print_and_check(&format!(
            "hqq live: seed {seed} (TCH_QUANT_PARITY_SEED), {n} random + {minilm} all-MiniLM-L6-v2 \
             weight slices on {device:?}"
        ));
        if checkpoint.is_some() {
            let real = report.by_category.get("minilm").map_or(0, |t| t.identical);
            assert_eq!(real, minilm, "MiniLM slices bit-identical");
        }
    }
    Ok(())
}

fn w() -> Tensor {
    Tensor::randn([8, 64], (Kind::Float, Device::Cpu))
}

/// Each refusal torchao does not make itself (it crashes, loops on nothing
/// or computes garbage there) is a typed error naming the argument.
#[test]
fn refusals_name_the_argument_and_value() {
    let d = HqqOptions::default();
    let solver = |s: HqqSolverOptions| HqqOptions { solver: s, ..d };
    let s = HqqSolverOptions::default();
    let cases: Vec<(&str, &str, Tensor, HqqOptions)> = vec![
        ("nbits", "0", w(), HqqOptions { nbits: 0, ..d }),
        ("nbits", "9", w(), HqqOptions { nbits: 9, ..d }),
        (
            "group_size",
            "0",
            w(),
            HqqOptions {
                group_size: Some(0),
                ..d
            },
        ),
        (
            "group_size",
            "-64",
            w(),
            HqqOptions {
                group_size: Some(-64),
                ..d
            },
        ),
        (
            "group_size",
            "48",
            w(),
            HqqOptions {
                group_size: Some(48),
                ..d
            },
        ),
        ("axis", "2", w(), HqqOptions { axis: 2, ..d }),
        ("axis", "-1", w(), HqqOptions { axis: -1, ..d }),
        (
            "compute_dtype",
            "int8",
            w(),
            HqqOptions {
                compute_dtype: Kind::Int8,
                ..d
            },
        ),
        (
            "compute_dtype",
            "float64",
            w(),
            HqqOptions {
                compute_dtype: Kind::Double,
                ..d
            },
        ),
        (
            "solver.dtype",
            "int32",
            w(),
            solver(HqqSolverOptions {
                dtype: Some(Kind::Int),
                ..s
            }),
        ),
        (
            "solver.beta",
            "0",
            w(),
            solver(HqqSolverOptions { beta: 0.0, ..s }),
        ),
        (
            "solver.beta",
            "NaN",
            w(),
            solver(HqqSolverOptions {
                beta: f64::NAN,
                ..s
            }),
        ),
        (
            "solver.kappa",
            "inf",
            w(),
            solver(HqqSolverOptions {
                kappa: f64::INFINITY,
                ..s
            }),
        ),
        (
            "solver.kappa",
            "-1",
            w(),
            solver(HqqSolverOptions { kappa: -1.0, ..s }),
        ),
        (
            "solver.kappa",
            "1e-300",
            w(),
            solver(HqqSolverOptions {
                kappa: 1e-300,
                early_stop: false,
                ..s
            }),
        ),
        (
            "solver.lp_norm",
            "NaN",
            w(),
            solver(HqqSolverOptions {
                lp_norm: f64::NAN,
                ..s
            }),
        ),
        (
            "solver.iters",
            "0",
            w(),
            solver(HqqSolverOptions { iters: 0, ..s }),
        ),
        (
            "tensor",
            "Int",
            Tensor::zeros([8, 64], (Kind::Int, Device::Cpu)),
            d,
        ),
        (
            "tensor",
            "Double",
            Tensor::zeros([8, 64], (Kind::Double, Device::Cpu)),
            d,
        ),
        (
            "tensor",
            "[0, 64]",
            Tensor::zeros([0, 64], (Kind::Float, Device::Cpu)),
            d,
        ),
        (
            "tensor",
            "[512]",
            Tensor::zeros([512], (Kind::Float, Device::Cpu)),
            HqqOptions {
                group_size: None,
                ..d
            },
        ),
        (
            "tensor",
            "[]",
            Tensor::from(1.0f32),
            HqqOptions {
                group_size: Some(1),
                raw_output: true,
                ..d
            },
        ),
        (
            "tensor",
            "[8, 64]",
            w(),
            HqqOptions {
                group_size: Some(16),
                axis: 0,
                raw_output: true,
                ..d
            },
        ),
        ("tensor", "sparse", w().to_sparse_sparse_dim(2), d),
        ("tensor", "undefined", Tensor::new(), d),
    ];
    let n = cases.len();
    for (arg, value, t, o) in cases {
        let e = match choose_qparams_and_quantize_affine_hqq(&t, &o) {
            Ok(_) => panic!("`{arg}` = {value}: computed, expected a refusal"),
            Err(e) => e,
        };
        assert!(replay::names(&e, arg), "`{arg}` = {value}: {e}");
        let msg = e.to_string();
        if !matches!(value, "sparse" | "undefined") {
            assert!(
                msg.contains(value),
                "`{arg}` = {value}: the message omits the value: {msg}"
            );
        }
    }
    println!("hqq refusals: {n}/{n} typed, naming the argument");
}
