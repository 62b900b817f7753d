//! torchao 0.18.0's float8 primitives and version-2 recipes against the
//! crate, bit for bit (issue 12): `choose_scale_float8` per tensor, row and
//! block (e8m0 and bounds included), `quantize/dequantize_affine_float8`
//! with per-block scales, and `Int8WeightOnlyConfig`,
//! `Float8WeightOnlyConfig`, `IntxWeightOnlyConfig` and
//! `Int8DynamicActivationInt8WeightConfig`'s stored weight parts and
//! `dequantize()` through `AffineQuantizedTensor` with the 0.18 recipes.
//!
//! The committed fixtures (`tests/ao18_recipes/fixtures`, written by
//! `tests/ao18_recipes/oracle.py fixtures`) always run; live seeded cases
//! come from one oracle process on `.venv-ao18` (skipped with a line without
//! it; failing with `TCH_QUANT_REQUIRE_ORACLE=1`). `TCH_QUANT_PARITY_SEED`
//! and `TCH_QUANT_PARITY_COUNT` (default 240) set the seed and count.

#[path = "common/live.rs"]
mod live;
#[path = "ao18_recipes/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

#[path = "common/oracle.rs"]
mod common_oracle;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

const COUNT: usize = 240;

fn check_versions(store: &store::Store) {
    assert_eq!(store.torch.split('+').next(), Some("2.13.0"));
    assert_eq!(store.torchao, "0.18.0");
}

fn fail_on(tally: &replay::Tally, what: &str) {
    for f in tally.failures.iter().take(20) {
        eprintln!("MISMATCH ({what}) {f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{what}: {} of {} cases differ from torchao 0.18.0",
        tally.failures.len(),
        tally.total
    );
}

#[test]
fn fixtures_and_live_are_bit_identical() -> Result<()> {
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ao18_recipes/fixtures");
    let fixtures = store::Store::load(&dir, replay::kind_of)?;
    check_versions(&fixtures);
    let fixed = replay::replay(&fixtures)?;
    assert!(fixed.total >= 200, "only {} fixture cases", fixed.total);
    fail_on(&fixed, "fixtures");
    let Some(python) = common_oracle::oracle_python_ao18() else {
        println!(
            "torchao 0.18.0 recipes/float8: fixtures {}/{} identical, live skipped (no .venv-ao18)",
            fixed.identical, fixed.total
        );
        return Ok(());
    };
    let (seed, n) = (live::seed(), live::count(COUNT));
    let out = std::env::temp_dir().join(format!("tch-quant-ao18-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ao18_recipes/oracle.py");
    let status = Command::new(&python)
        .arg(&script)
        .args([
            "live",
            "--seed",
            &seed.to_string(),
            "--count",
            &n.to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&out);
        bail!("the torchao 0.18 oracle failed: {status} (seed {seed})");
    }
    let live_store = store::Store::load(&out, replay::kind_of);
    let _ = std::fs::remove_dir_all(&out);
    let live_store = live_store?;
    check_versions(&live_store);
    assert_eq!(live_store.cases.len(), n, "the oracle drew another count");
    let drawn = replay::replay(&live_store)?;
    println!(
        "torchao 0.18.0 recipes/float8: fixtures {}/{} identical, live {}/{} identical (seed {seed})",
        fixed.identical, fixed.total, drawn.identical, drawn.total
    );
    fail_on(&drawn, &format!("live, seed {seed}"));
    Ok(())
}
