//! Ctrl-C and SIGTERM: stop between tensors so that temporary files are
//! removed as the run unwinds, instead of dying with them on disk.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{fail, Category, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler. A second signal exits at once, for a user who
/// does not want to wait for the tensor in progress.
pub fn install() {
    // A handler that cannot be installed (one is already set) only costs
    // the clean-up on Ctrl-C, so the run goes on without it.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(Category::Interrupted.code()));
        }
    });
}

/// Fails with [`Category::Interrupted`] once a signal has arrived.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        fail!(
            Category::Interrupted,
            "interrupted; no output was written and the input is untouched"
        );
    }
    Ok(())
}
