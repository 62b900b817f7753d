//! The quantized linear layers against torchao 0.11's `quantize_(nn.Linear,
//! Config)` forward on torch 2.13, bit for bit: the committed fixtures
//! (`tests/linear/fixtures`, written by `tests/linear/oracle.py fixtures`),
//! and live cases the oracle draws and evaluates at test time: seeded
//! random shapes, and all-MiniLM-L6-v2's real weights and activations.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the number of random cases (default 320; the
//! MiniLM test draws an eighth of it). The live tests skip without the
//! project's `.venv` (fail with `TCH_QUANT_REQUIRE_ORACLE=1`), and run on
//! CUDA too, against torchao on CUDA, when a device is present.

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "common/oracle.rs"]
mod common_oracle;
#[path = "common/live.rs"]
mod live;
#[path = "linear/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Cases per test without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 320;

use anyhow::{bail, Context, Result};
use tch::Device;

const SCHEMES_ON_CPU: [&str; 5] = [
    "int8_weight_only",
    "int4_cpu",
    "float8_weight_only",
    "int8_dynamic_activation_int8_weight",
    "uintx_weight_only",
];

fn devices(tag: &str) -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    if common_cuda::cuda_or_skip(&format!("linear {tag}: skipped CUDA (not available)")) {
        devices.push(Device::Cuda(0));
    }
    devices
}

/// Runs `tests/linear/oracle.py <args> --device <device> --out <tmp>` and
/// loads what it wrote.
fn draw(python: &Path, args: &[String], device: Device, tag: &str) -> Result<replay::Oracle> {
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tch-quant-linear-{tag}-{dev}-{}",
        std::process::id()
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linear/oracle.py");
    let status = Command::new(python)
        .arg(&script)
        .args(args)
        .args(["--device", dev, "--out"])
        .arg(&dir)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("the linear oracle failed: {status}");
    }
    let oracle = replay::Oracle::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    oracle
}

fn check_versions(oracle: &replay::Oracle) {
    assert_eq!(oracle.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.torchao, "0.11.0");
}

#[test]
fn fixture_linears_are_bit_identical_on_cpu() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linear/fixtures");
    let oracle = replay::Oracle::load(&dir)?;
    check_versions(&oracle);
    let report = oracle.replay_all(Device::Cpu)?;
    let compared = match &oracle.other_cpu {
        None => "outputs and stored weights".to_string(),
        Some(cpu) => format!(
            "stored weights only: the outputs were computed on {cpu}, this CPU is {}, and a float \
             GEMM's bits depend on the CPU; the live cases compare outputs with torchao here",
            replay::this_cpu()
        ),
    };
    report.print_and_check(&format!(
        "linear fixtures ({} cases, cpu, {} torch thread(s), torchao {}; {compared})",
        report.cases(),
        oracle.threads,
        oracle.torchao
    ));
    assert!(
        report.cases() >= 500,
        "expected at least 500 fixture cases, found {}",
        report.cases()
    );
    for name in SCHEMES_ON_CPU {
        let computed = report.by_scheme.get(name).map_or(0, |t| t.computed);
        assert!(
            computed >= 50,
            "the fixtures hold {computed} computed {name} cases"
        );
    }
    let refusals: usize = report.by_scheme.values().map(|t| t.refusals).sum();
    assert!(refusals >= 20, "the fixtures hold {refusals} refusals");
    if common_cuda::cuda_or_skip("linear fixtures: skipped CUDA (not available)") {
        println!(
            "linear fixtures: the fixtures hold CPU results; CUDA parity is checked by the \
             live tests against torchao on CUDA"
        );
    }
    Ok(())
}

#[test]
fn random_linears_are_bit_identical() -> Result<()> {
    let Some(python) = common_oracle::oracle_python() else {
        return Ok(());
    };
    let (seed, n) = (live::seed(), live::count(COUNT));
    for device in devices("random") {
        let args = [
            "random",
            "--seed",
            &seed.to_string(),
            "--count",
            &n.to_string(),
        ]
        .map(String::from);
        let oracle = draw(&python, &args, device, "random")?;
        check_versions(&oracle);
        assert_eq!(oracle.cases.len(), n, "the oracle drew another count");
        oracle.replay_all(device)?.print_and_check(&format!(
            "linear random: seed {seed} (TCH_QUANT_PARITY_SEED), {n} cases on {device:?}"
        ));
    }
    Ok(())
}

#[test]
fn minilm_linears_are_bit_identical() -> Result<()> {
    let Some(python) = common_oracle::oracle_python() else {
        return Ok(());
    };
    let Some(checkpoint) = common_oracle::minilm_checkpoint(&python) else {
        return Ok(());
    };
    let (seed, n) = (live::seed(), (live::count(COUNT) / 8).max(1));
    for device in devices("minilm") {
        let args = [
            "minilm".to_string(),
            "--checkpoint".into(),
            checkpoint.display().to_string(),
            "--seed".into(),
            seed.to_string(),
            "--count".into(),
            n.to_string(),
        ];
        let oracle = draw(&python, &args, device, "minilm")?;
        check_versions(&oracle);
        oracle.replay_all(device)?.print_and_check(&format!(
            "linear minilm: seed {seed} (TCH_QUANT_PARITY_SEED), {n} cases of all-MiniLM-L6-v2's \
             linears on real activations, on {device:?}"
        ));
    }
    Ok(())
}
