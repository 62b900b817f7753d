//! Live differential test: draws seeded random cases, evaluates them with
//! torchao in the project's `.venv` (`tests/parity/generate.py random`) and
//! replays them through the crate, bit for bit.
//!
//! `TCH_QUANT_PARITY_SEED` sets the seed (printed on every run),
//! `TCH_QUANT_PARITY_COUNT` the number of cases per test (default 2000),
//! `TCH_QUANT_PYTHON` the interpreter (default `.venv/bin/python`).

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "parity/extra_ops.rs"]
mod extra_ops;
#[path = "common/live.rs"]
mod live;
#[path = "parity/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Cases per test without `TCH_QUANT_PARITY_COUNT`.
const COUNT: usize = 2000;

use anyhow::{bail, Context, Result};
use tch::Device;

fn python() -> PathBuf {
    std::env::var_os("TCH_QUANT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Draws and evaluates `count` cases of `ops` on `device` with torchao.
fn draw(ops: &str, seed: u64, device: Device, tag: &str) -> Result<replay::Oracle> {
    let dir = std::env::temp_dir().join(format!(
        "tch-quant-live-{tag}-{}-{seed}",
        std::process::id()
    ));
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/generate.py");
    let status = Command::new(python())
        .arg(&script)
        .args([
            "random",
            "--seed",
            &seed.to_string(),
            "--count",
            &live::count(COUNT).to_string(),
        ])
        .args(["--ops", ops, "--device", dev, "--out"])
        .arg(&dir)
        .status()
        .with_context(|| format!("running {} (run `make venv` first)", python().display()))?;
    if !status.success() {
        bail!("the oracle failed: {status}");
    }
    let oracle = replay::Oracle::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    oracle
}

fn live(ops: &str, tag: &str) -> Result<()> {
    let seed = live::seed();
    let mut devices = vec![Device::Cpu];
    if common_cuda::cuda_or_skip(&format!("live {tag}: skipped CUDA (not available)")) {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let oracle = draw(ops, seed, device, tag)?;
        let (n, identical, diffs) = replay::replay_all(&oracle, device)?;
        println!(
            "live {tag}: seed {seed} (TCH_QUANT_PARITY_SEED), {n} random cases compared on \
             {device:?} against torchao {} on torch {}, {identical} identical",
            oracle.torchao, oracle.torch
        );
        for d in diffs.iter().take(40) {
            println!("  DIFF {d}");
        }
        assert!(
            n >= live::count(COUNT),
            "the oracle drew {n} cases, fewer than {}",
            live::count(COUNT)
        );
        assert_eq!(
            identical,
            n,
            "{} random cases differ from torchao",
            diffs.len()
        );
    }
    Ok(())
}

#[test]
fn random_choose_qparams_cases_are_bit_identical() -> Result<()> {
    live("choose_qparams_affine", "choose")
}

#[test]
fn random_primitive_cases_are_bit_identical() -> Result<()> {
    live(
        "choose_qparams_affine_with_min_max,quantize_affine,dequantize_affine,\
         fake_quantize_affine,fake_quantize_affine_cachemask,chain,\
         choose_qparams_affine_float8,quantize_affine_float8,dequantize_affine_float8,\
         choose_qparams_affine_floatx,quantize_affine_floatx,dequantize_affine_floatx,\
         pack_uintx,unpack_uintx",
        "primitives",
    )
}
