//! Writing to stdout and stderr without panicking: `print!` panics when the
//! stream is closed or full (a pipe whose reader left, `>/dev/full`), which
//! would end the run with exit 101.

use std::io::Write;

use tch_quant::checkpoint::OutputPlan;

use crate::exit::{Category, Failure, Result};

/// The summary of a run whose outputs are already committed: a stdout that
/// cannot take it must not turn a completed run into a failing one, so
/// write errors are ignored.
pub fn summary(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// What a command produces on stdout (`inspect`): a write error fails the
/// run, except a reader that stopped reading (`| head`), which asked for
/// no more.
pub fn result(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            Category::Internal,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// A message on stderr; there is nowhere left to report a failure to
/// write it.
pub fn error(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Says which temporaries of killed runs the plan deleted, if any.
pub fn stale_removed(plan: &OutputPlan) {
    if let [first, ..] = plan.stale_removed.as_slice() {
        let n = plan.stale_removed.len();
        error(&format!(
            "note: removed {n} temporary file{} left by a tch-quant run that was killed ({}{})",
            if n == 1 { "" } else { "s" },
            first.display(),
            if n > 1 { ", ..." } else { "" }
        ));
    }
}
