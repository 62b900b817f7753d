//! Replays the committed torchao fixtures (`tests/parity/fixtures`, written by
//! `tests/parity/generate.py`) and requires every case to be bit-identical.

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "parity/extra_ops.rs"]
mod extra_ops;
#[path = "parity/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::path::Path;

use tch::Device;

#[test]
fn every_fixture_case_is_bit_identical_on_cpu() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/fixtures");
    let oracle = replay::Oracle::load(&dir)?;
    assert_eq!(oracle.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(oracle.torchao, "0.11.0");
    let (n, identical, diffs) = replay::replay_all(&oracle, Device::Cpu)?;
    println!(
        "fixtures: {n} cases, {identical} identical (cpu, torchao {})",
        oracle.torchao
    );
    for d in diffs.iter().take(40) {
        println!("  DIFF {d}");
    }
    assert!(n >= 1000, "expected at least 1000 fixture cases, found {n}");
    assert_eq!(
        identical,
        n,
        "{} fixture cases differ from torchao",
        diffs.len()
    );
    if common_cuda::cuda_or_skip("fixtures: skipped CUDA (not available)") {
        println!(
            "fixtures: CUDA is available; the fixtures hold CPU results, so CUDA parity \
             is checked by tests/parity_live.rs against torchao running on CUDA"
        );
    }
    Ok(())
}
