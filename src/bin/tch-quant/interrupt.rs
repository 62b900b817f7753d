//! Ctrl-C and SIGTERM: stop between tensors so that temporary files are
//! removed as the run unwinds, instead of dying with them on disk.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{fail, Category, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler. The first signal asks the run to stop at the next
/// tensor boundary; a second one, for a user who does not want to wait for
/// the tensor in progress, deletes every temporary file and exits at once
/// (unless the final renames have begun: they finish or roll back within
/// milliseconds, see `temp::abandon`).
pub fn install() {
    // A handler that cannot be installed (one is already set) only costs
    // the clean-up on Ctrl-C, so the run goes on without it.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            tch_quant::checkpoint::temp::abandon(|| {
                crate::print::error(
                    "error: interrupted again; stopped at once, no output was written",
                );
                exit_now(i32::from(Category::Interrupted.code()))
            });
        }
    });
}

/// Ends the process from the handler's thread while the main thread may be
/// inside a libtorch op. `std::process::exit` would run the C++ static
/// destructors, which tear down libtorch's operator registry under that op
/// (it then fails and the run dies of a panic, with another exit code); the
/// POSIX `_exit` ends the process without them.
#[cfg(unix)]
fn exit_now(code: i32) -> ! {
    extern "C" {
        fn _exit(status: std::ffi::c_int) -> !;
    }
    // SAFETY: `_exit` is async-signal-safe, takes a plain int and never
    // returns; nothing of this process is used after it.
    unsafe { _exit(code) }
}

#[cfg(not(unix))]
fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

/// Whether a signal has arrived.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`Category::Interrupted`] once a signal has arrived.
pub fn check() -> Result<()> {
    if requested() {
        fail!(
            Category::Interrupted,
            "interrupted; no output was written and the input is untouched"
        );
    }
    Ok(())
}
