//! The torchao 0.18.0 oracle's Python: `.venv-ao18` (made by `make
//! venv-ao18`), torchao 0.18.0 over `.venv`'s torch 2.13.0.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `.venv-ao18/bin/python`, if it imports torch 2.13.0 and torchao 0.18.0.
/// Without it the live test skips, unless `TCH_QUANT_REQUIRE_ORACLE=1`
/// (set by `make test`), where a missing oracle fails it.
pub fn oracle_python_ao18() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ao18/bin/python");
    let probe = Command::new(&python)
        .args([
            "-c",
            "import torch, torchao; assert torch.__version__.startswith('2.13.0'); \
             assert torchao.__version__ == '0.18.0'",
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
        "TCH_QUANT_REQUIRE_ORACLE=1 but {} has no torch 2.13.0 + torchao 0.18.0 (run `make venv-ao18`): {why}",
        python.display()
    );
    println!("skipped: no .venv-ao18 with torchao 0.18.0 (run `make venv-ao18`)");
    None
}
