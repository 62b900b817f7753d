//! torchao 0.18.0 parity of `Semantics::Torchao0_18` (issue 12): the
//! committed fixtures (`tests/ao18/fixtures`, written by
//! `tests/ao18/oracle.py fixtures`) and seeded random cases that one run of
//! the 0.18 oracle draws at test time, each replayed on the fused and the
//! reference path and required bit-identical (`tests/ao18/replay.rs`).
//!
//! The live cases need `.venv-ao18` (`make venv-ao18`): without it the live
//! test skips with a printed line, unless `TCH_QUANT_REQUIRE_ORACLE=1`,
//! where it fails. `TCH_QUANT_PARITY_SEED` / `TCH_QUANT_PARITY_COUNT` rerun
//! a seed or change the number of scenarios.

#[path = "common/live.rs"]
mod live;
#[path = "ao18/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

#[path = "common/oracle.rs"]
mod common_oracle;

use common_oracle::oracle_python_ao18 as oracle_python;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Random scenarios per live run (each gives about four calls).
const SCENARIOS: usize = 800;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn report(what: &str, r: &replay::Report) {
    for d in r.diffs.iter().take(40) {
        println!("  DIFF {d}");
    }
    assert_eq!(
        r.identical,
        r.total,
        "{what}: {} of {} calls differ from torchao 0.18.0",
        r.total - r.identical,
        r.total
    );
}

#[test]
fn fixtures_and_live_cases_are_bit_identical_to_torchao_0_18() -> Result<()> {
    let fixtures = replay::load(&root().join("tests/ao18/fixtures"))?;
    let fx = replay::replay_all(&fixtures)?;
    assert!(fx.total >= 1500, "only {} fixture calls", fx.total);
    report("fixtures", &fx);
    let Some(python) = oracle_python() else {
        println!(
            "torchao 0.18.0: fixtures {}/{} identical, live skipped",
            fx.identical, fx.total
        );
        return Ok(());
    };
    let seed = live::seed();
    let dir = std::env::temp_dir().join(format!("tch-quant-ao18-{}-{seed}", std::process::id()));
    let status = Command::new(&python)
        .arg(root().join("tests/ao18/oracle.py"))
        .args(["live", "--seed", &seed.to_string(), "--count"])
        .arg(live::count(SCENARIOS).to_string())
        .arg("--out")
        .arg(&dir)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        bail!("the 0.18 oracle failed: {status}");
    }
    let drawn = replay::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let lv = replay::replay_all(&drawn?)?;
    report(&format!("live (seed {seed})"), &lv);
    println!(
        "torchao 0.18.0: fixtures {}/{} identical, live {}/{} identical (seed {seed})",
        fx.identical, fx.total, lv.identical, lv.total
    );
    Ok(())
}
